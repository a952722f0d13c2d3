"""MLflow tracking for a sweep: one parent run per sweep, one nested run per trial.

store.py (shared helpers), trial.py (a trial's run), sweep_run.py (the parent run and the
driver callback), replay.py (records kept while MLflow was away).

The driver owns the parent run (`SweepTracker`). Each trial logs to its own nested run
from the worker process (`TrialLogger`), so a multi-node sweep with an `http://` tracking
server needs nothing from the driver. Runs are found by tags (`nrfer.sweep_instance`,
`nrfer.trial_id`) before any is created, so a retried trial or a resumed sweep continues
its run instead of duplicating it. A sweep's name may be used again (another storage, or
after its folder was removed); its instance id (in the ledger's `sweep.yaml` and on every run)
never is, so no sweep ever finds, closes or deletes another one's runs. A trial cannot close its own run when ASHA stops it or
it crashes; the driver's `TrialStatusCallback` does, so no run is left RUNNING.
"""

from sweep.tracking.replay import replay, replay_records
from sweep.tracking.store import (
    EPOCH_KEYS,
    HISTORY_FILE,
    INSTANCE,
    ROLE,
    SWEEP_ID,
    TRIAL_ID,
    WORKER_HTTP_ENV,
    check_tracking_uri,
    log_metrics,
    tracking_uri,
)
from sweep.tracking.sweep_run import SweepNotFound, SweepTracker, find_sweep
from sweep.tracking.trial import TrialLogger

__all__ = [
    "EPOCH_KEYS",
    "HISTORY_FILE",
    "INSTANCE",
    "ROLE",
    "SWEEP_ID",
    "TRIAL_ID",
    "WORKER_HTTP_ENV",
    "SweepTracker",
    "TrialLogger",
    "SweepNotFound",
    "find_sweep",
    "check_tracking_uri",
    "log_metrics",
    "replay",
    "replay_records",
    "tracking_uri",
]
