"""The sweep's interactive report (sweep.analysis.html_report) kept fresh on its parent run
while trials end: `report/index.html` rebuilt from MLflow at most every `every_s` seconds,
in the sweep's work folder (inside --storage), uploaded, and the local copy deleted."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from ray import tune

from nrfer.files import write_atomic
from sweep.analysis.html_report import sweep_page
from sweep.runtime.retention import WORK
from sweep.tracking.store import with_retries
from sweep.tracking.sweep_run import SweepTracker

log = logging.getLogger("nrfer.sweep")
REPORT = "index.html"


def write_report_html(
    tracker: SweepTracker, spec_dict: dict, folder: Path, study_table: str | None = None
) -> Path:
    """`folder/index.html` for the sweep `tracker` tracks, from its runs in MLflow."""
    parent = tracker.client.get_run(tracker.parent)
    path = folder / REPORT
    page = sweep_page(tracker.client, parent, spec_dict, tracker.uri, study_table)
    write_atomic(path, page)
    return path


class ReportRefresh(tune.Callback):
    """Tune callback: the parent run's report/index.html rebuilt as trials end (throttled)."""

    def __init__(
        self, tracker: SweepTracker, spec_dict: dict, exp_dir: Path, every_s: float = 60.0
    ) -> None:
        self.tracker, self.spec_dict, self.exp_dir = tracker, spec_dict, Path(exp_dir)
        self.every_s = every_s
        self.last = 0.0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.refresh()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        work = self.exp_dir / WORK
        work.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(prefix=".live-report-", dir=work) as tmp:
                path = write_report_html(self.tracker, self.spec_dict, Path(tmp))
                with_retries(
                    lambda: self.tracker.client.log_artifact(
                        self.tracker.parent, str(path), "report"
                    ),
                    "upload the report",
                    attempts=1,
                )
        except Exception as e:  # the report is a view: a failure must not stop the sweep
            log.warning("could not refresh the sweep's report: %s", e)
