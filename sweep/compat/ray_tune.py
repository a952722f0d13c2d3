"""Shims into Ray Tune and ray.init (checked on Ray 2.60): ASHA's rung records, a restored
Tuner's callbacks and scheduler, the trial statuses of Tune's saved state, Tune's copy of
AWS keys into runtime envs, and ray.init's node address and temp folder."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, cast

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from sweep.compat.guard import shim

# -- ASHA's rung records ----------------------------------------------------------------------
ASHA_MISSING = (
    "ASHA's rung records have no public reader or writer; ASHAScheduler.save/restore pickle "
    "the whole scheduler, whose restored metric and mode a resumed Tuner refuses"
)


def _probe_asha() -> None:
    asha = ASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
    asha.set_search_properties("m", "max")
    rungs = asha._brackets[0]._rungs
    assert [m for m, _ in rungs] == [4, 2, 1], rungs
    assert all(isinstance(recorded, dict) for _, recorded in rungs)
    assert isinstance(asha._trial_info, dict) and asha._num_stopped == 0
    assert asha._metric_op == 1.0 and asha._time_attr == "training_iteration"


@shim("ray", ASHA_MISSING, _probe_asha)
def asha_rungs(asha: ASHAScheduler) -> list[list[tuple[int, dict[str, float]]]]:
    """Each bracket's rungs as Tune keeps them, highest milestone first: (milestone,
    {trial_id: score}), a score being the metric x `asha_score_sign`. The dicts are Tune's
    own: what is written into them is what ASHA decides by."""
    brackets: Any = asha._brackets  # Tune's internals: typed here by what they hold
    return [bracket._rungs for bracket in brackets]


@shim("ray", ASHA_MISSING, _probe_asha)
def asha_bracket_of(asha: ASHAScheduler, trial_id: str) -> int | None:
    """The index of the bracket ASHA put a trial in (None: not added yet)."""
    bracket = asha._trial_info.get(trial_id)
    return next((i for i, b in enumerate(asha._brackets) if b is bracket), None)


@shim("ray", ASHA_MISSING, _probe_asha)
def asha_num_stopped(asha: ASHAScheduler, value: int | None = None) -> int:
    """How many trials ASHA has stopped (set it with `value`)."""
    if value is not None:
        asha._num_stopped = int(value)
    return asha._num_stopped


@shim("ray", ASHA_MISSING, _probe_asha)
def asha_score_sign(asha: ASHAScheduler) -> float:
    """+1 when the metric is maximised, -1 when minimised: rung scores are metric x sign."""
    return cast(float, asha._metric_op)  # set by set_search_properties (every start)


@shim("ray", ASHA_MISSING, _probe_asha)
def asha_time_attr(asha: ASHAScheduler) -> str:
    """The result key ASHA counts progress in (our sweeps: training_iteration)."""
    return asha._time_attr


# -- a restored Tuner ----------------------------------------------------------------------------
def _probe_tuner() -> None:
    scheduler = FIFOScheduler()
    tuner = tune.Tuner(
        lambda config: None,
        tune_config=tune.TuneConfig(scheduler=scheduler),
        run_config=tune.RunConfig(callbacks=[]),
    )
    local: Any = tuner._local_tuner
    assert local._run_config.callbacks == []
    assert local._tune_config.scheduler is scheduler


@shim(
    "ray",
    "Tuner.restore takes no callbacks: the restored RunConfig holds pickled copies bound to "
    "the killed driver's MLflow client",
    _probe_tuner,
)
def set_restored_callbacks(tuner: tune.Tuner, callbacks: list) -> None:
    """Give a restored Tuner this driver's callbacks."""
    local: Any = tuner._local_tuner
    local._run_config.callbacks = callbacks


@shim("ray", "Tuner.restore gives no access to the scheduler it restored", _probe_tuner)
def restored_scheduler(tuner: tune.Tuner) -> Any:
    """The scheduler a restored Tuner unpickled (its file paths are the killed driver's)."""
    local: Any = tuner._local_tuner
    return local._tune_config.scheduler


# -- Tune's saved experiment state --------------------------------------------------------------
def saved_state_file(exp_dir: str | Path) -> Path | None:
    """Tune's newest saved experiment state in `exp_dir` (None: none yet). Newest by name:
    each session's file is named by its start time, and a restored Tuner syncs the older
    ones back too, so their mtimes say nothing."""
    files = sorted(Path(exp_dir).glob("experiment_state-*.json"))
    return files[-1] if files else None


def _probe_saved_state() -> None:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    assert '"trial_data"' in inspect.getsource(TuneController.save_to_dir)
    trial = Trial("nrfer_probe", stub=True, trial_id="probe1")
    state = json.loads(trial.get_json_state()[0])
    assert state["trial_id"] == "probe1" and state["status"] == Trial.PENDING, state


@shim(
    "ray",
    "Tune has no cheap reader of its saved experiment state (ExperimentAnalysis reads every "
    "trial's results), so the driver cannot tell which trials a resume would run again",
    _probe_saved_state,
)
def saved_trial_statuses(exp_dir: str | Path) -> dict[str, str]:
    """trial id -> status in Tune's newest saved experiment state in `exp_dir` ({}: none
    yet, or one being written)."""
    path = saved_state_file(exp_dir)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for trial_json, _ in data["trial_data"]:
        state = json.loads(trial_json)
        out[state["trial_id"]] = state["status"]
    return out


# -- Ray's start ---------------------------------------------------------------------------------
def _probe_env_propagation() -> None:
    from ray.tune.execution import class_cache

    # a set (our shim has emptied it of AWS_* once Ray was started here)
    assert isinstance(class_cache.ENV_VARS_TO_PROPAGATE, set)
    assert "propagate" in inspect.getsource(class_cache).lower()


@shim(
    "ray",
    "no setting keeps Tune from copying AWS_* variables into every trial actor's runtime_env",
    _probe_env_propagation,
)
def stop_env_propagation(names: tuple[str, ...]) -> None:
    """Tune copies these variables into each trial actor's runtime_env, which Ray's agent
    writes to its logs; drop them from Tune's module-level set."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(names)


def _probe_init_args() -> None:
    source = inspect.getsource(ray.init)
    for arg in ("_node_ip_address", "_temp_dir"):
        assert f'kwargs.pop("{arg}"' in source, f"ray.init no longer reads {arg}"


@shim(
    "ray",
    "ray.init has no public argument for the address a new local node listens on, nor for "
    "its session folder",
    _probe_init_args,
)
def local_node_args(ip: str, temp_dir: str | Path) -> dict[str, Any]:
    """ray.init's private keyword arguments for a new local node on `ip` with its session
    files under `temp_dir` (ray.init refuses an argument it no longer reads)."""
    return {"_node_ip_address": ip, "_temp_dir": str(temp_dir)}
