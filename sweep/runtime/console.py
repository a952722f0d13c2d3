"""What a sweep prints while it runs: a line when a trial starts and when it ends (finished,
stopped early, failed) with its run name and best value, and a status line (done / running /
pending of N, elapsed, ETA, best so far). A small sweep (at most `EPOCH_LINES_UP_TO` trials)
or `--verbose` adds a line per epoch; a large one stays at about two lines per trial (a
64-trial x 100-epoch sweep would otherwise print 6,400). On a terminal the status line stays
at the bottom, redrawn in place; in a log file it follows the first and the last trial's end line,
and at most once per `STATUS_EVERY_S` between. Ray Tune's own tables are
behind `--verbose`."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Collection

from ray import tune
from ray.tune.result import TRAINING_ITERATION

from sweep.runtime.startup import clock, launched
from sweep.tracking.ui import run_name, trial_number

ON_GPU_KEY = "nrfer_on_gpu"  # reported by each trial: 1.0 on CUDA, 0.0 on the CPU
EPOCH_LINES_UP_TO = 8  # trials: a sweep this small prints each epoch
STATUS_EVERY_S = 60.0  # a large sweep's log: a status line at most this often


def quiet() -> None:
    """The default terminal: Ray's, MLflow's and Optuna's INFO lines and Tune's own output
    engine off (its experiment box, TensorBoard hint and trial tables); warnings and errors
    still show. `--verbose` skips this."""
    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter: silent at 0
    for name in ("ray", "ray.tune", "ray.train", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints two "View run / experiment at" lines per run ended against a server:
    # the sweep prints its own links (the parent run, the trials view)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class Console(tune.Callback):
    """Tune callback printing the sweep's progress (see the module docstring)."""

    def __init__(
        self,
        total: int,
        metric: str,
        mode: str,
        max_epochs: int,
        ended: Collection[str] = (),
        completed: Collection[str] = (),
        stream=None,
        redraw_s: float = 5.0,
        since: float | None = None,
        per_epoch: bool | None = None,
    ) -> None:
        self.total, self.metric, self.mode, self.max_epochs = total, metric, mode, max_epochs
        self._stream = stream  # None: sys.stdout at the time (Tune pickles its callbacks)
        self.since = launched() if since is None else since  # wall clock: elapsed from launch
        self.first_start: float | None = None  # when the first trial started (wall clock)
        self.epochs = 0  # epochs reported by this driver's trials
        self.ended_epochs: list[int] = []  # epochs each ended trial ran
        self.counted = set(ended)  # trials a resumed sweep had already ended, and since
        self.done_before = len(self.counted)
        self.again = set(completed)  # completed before a kill; Tune's older state runs them
        self.done = 0
        self.ended: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.names: dict[str, str] = {}
        self.last_status = 0.0
        self.redraw_s = redraw_s
        self.status_shown = False
        self.said_no_cuda = False
        # None: by size (at most EPOCH_LINES_UP_TO trials); the driver passes True on --verbose
        self.per_epoch = total <= EPOCH_LINES_UP_TO if per_epoch is None else per_epoch
        self.last_logged_status: float | None = None  # monotonic; a large sweep's log

    @property
    def stream(self):
        return self._stream or sys.stdout

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}

    # --- Tune's hooks -------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        name = run_name(trial_number(str(trial)), dict(trial.config or {}), trial.trial_id)
        self.names[trial.trial_id] = name
        self.first_start = self.first_start or time.time()
        if trial.trial_id not in self.again:  # else it ends at once, as it had ended
            self.event(f"{name}: started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.say_if_no_cuda(trial, result)
        epoch = int(result.get(TRAINING_ITERATION, 0))
        value = result.get(self.metric)
        if value is None:
            return
        self.epochs += 1
        if self.per_epoch:
            line = f"{self.name(trial)}: epoch {epoch}/{self.max_epochs} {self.metric} {value:.4f}"
            self.event(line)
        self.note_best(value, trial)

    def say_if_no_cuda(self, trial, result: dict) -> None:
        """Once per sweep: a trial that Ray gave GPUs trains on the CPU (CUDA absent where
        it runs, e.g. GPUs declared with `ray start --num-gpus` on a machine without them)."""
        asked = (trial.placement_group_factory.required_resources or {}).get("GPU", 0)
        if self.said_no_cuda or not asked or result.get(ON_GPU_KEY, 1.0):
            return
        self.said_no_cuda = True
        where = result.get("node_ip", "its node")
        self.event(
            f"note: trials ask for {asked:g} GPU each, but CUDA is not available on {where}: "
            "they train on the CPU (train.device: auto)"
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        epochs = int(result.get(TRAINING_ITERATION, 0))
        value = result.get(self.metric)
        if trial.trial_id not in self.counted:
            self.ended_epochs.append(epochs)
        self.count(trial)
        if result.get("diverged"):
            how = "failed: the loss diverged"
        elif epochs < self.max_epochs:
            how = f"stopped early after epoch {epochs}"
        else:
            how = "finished"
        best = result.get(f"best_{self.metric}", value)  # what the leaderboard ranks it by
        shown = f" best {self.metric} {best:.4f}" if best is not None else ""
        if best is not None and value is not None and value != best:
            shown += f" (last epoch {value:.4f})"
        self.event(f"{self.name(trial)}: {how}{shown}", status=True, trials=trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.count(trial)
        self.event(
            f"{self.name(trial)}: failed (traceback on its MLflow run, artifact error/)",
            status=True,
            trials=trials,
        )

    def on_step_end(self, iteration, trials, **info):
        if self.tty and time.monotonic() - self.last_status >= self.redraw_s:
            self.show_status(trials)

    def on_experiment_end(self, trials, **info):
        if self.tty and self.status_shown:
            self.stream.write("\n")
            self.stream.flush()

    # --- printing -----------------------------------------------------------------------

    def count(self, trial) -> None:
        """One more trial ended (a failed trial a resume retried counts once)."""
        self.ended.add(trial.trial_id)
        if trial.trial_id not in self.counted:
            self.counted.add(trial.trial_id)
            self.done += 1

    def name(self, trial) -> str:
        return self.names.get(trial.trial_id) or str(trial)

    def note_best(self, value: float, trial) -> None:
        better = self.best is None or (
            value > self.best[0] if self.mode == "max" else value < self.best[0]
        )
        if better:
            self.best = (float(value), self.name(trial).split(" ")[0])

    def status(self, trials) -> str:
        running = sum(t.status == "RUNNING" and t.trial_id not in self.ended for t in trials)
        done = self.done_before + self.done
        pending = max(self.total - done - running, 0)
        elapsed = time.time() - self.since
        left = self.eta(running, pending)
        eta = f"ETA {clock(left)}" if left is not None and done < self.total else "ETA -"
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        return (
            f"[{done}/{self.total} done, {running} running, {pending} pending | "
            f"{clock(elapsed)} elapsed, {eta}{' | ' + best if best else ''}]"
        )

    def eta(self, running: int, pending: int) -> float | None:
        """Seconds left: the epochs still to run (each trial to come runs as many as the
        ended ones did, on average; the running ones have run some) at the rate epochs have
        been reported since the first trial started (start-up excluded). None before a
        trial ended."""
        if not self.ended_epochs or not self.first_start or self.epochs == 0:
            return None
        per_trial = sum(self.ended_epochs) / len(self.ended_epochs)
        in_flight = self.epochs - sum(self.ended_epochs)  # epochs the running trials ran
        left = max((pending + running) * per_trial - max(in_flight, 0), 0.0)
        rate = self.epochs / max(time.time() - self.first_start, 1e-6)
        return left / rate

    def show_status(self, trials) -> None:
        self.stream.write(f"\r\033[K{self.status(trials)}")
        self.stream.flush()
        self.status_shown, self.last_status = True, time.monotonic()

    def event(self, line: str, status: bool = False, trials=None) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K{line}\n")
            if trials is not None:
                self.show_status(trials)
        else:
            self.stream.write(f"{line}\n")
            if status and trials is not None and self.log_status_now():
                self.stream.write(f"{self.status(trials)}\n")
        self.stream.flush()

    def log_status_now(self) -> bool:
        """In a log: after the first and the last end, and at most once per STATUS_EVERY_S
        in between (each end line says its own trial's news)."""
        now = time.monotonic()
        last = self.last_logged_status
        due = (
            last is None
            or now - last >= STATUS_EVERY_S
            or self.done_before + self.done >= self.total
        )
        if due:
            self.last_logged_status = now
        return due
