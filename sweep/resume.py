"""What a sweep was started with, and whether `--resume` may continue it.

`nrfer_sweep.yaml` beside Tune's files holds the resolved space (with its sha256) and the
sweep's status. `--resume` with another space, `num_samples` or data is refused with the
keys that changed, unless forced (then the sweep continues as it was started); `--resume`
of a finished sweep says so and touches nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml
from ray import tune

from nrfer.config import ConfigError, config_diff, fingerprint

SWEEP_STATE = "nrfer_sweep.yaml"  # not .json: Tune copies those back over newer ones
RUNNING, INTERRUPTED, FINISHED = "RUNNING", "INTERRUPTED", "FINISHED"


class SweepFinished(Exception):
    """`--resume` of a sweep that already finished: nothing to do (not an error)."""


def read_state(exp_dir: Path) -> dict | None:
    path = Path(exp_dir) / SWEEP_STATE
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: the sweep's state file is unreadable: {e}") from None


def write_state(exp_dir: Path, spec_dict: dict, status: str, **extra) -> None:
    """Atomically (a killed driver leaves the old file or the new one, never half)."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "spec": spec_dict,
        "spec_sha256": fingerprint(spec_dict),
        "status": status,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    tmp = exp_dir / (SWEEP_STATE + ".tmp")
    tmp.write_text(yaml.safe_dump(state, sort_keys=False))
    os.replace(tmp, exp_dir / SWEEP_STATE)


def prepare(exp_dir: Path, spec_dict: dict, resume: bool, force: bool = False) -> tuple[bool, dict]:
    """Decide how to start: returns (restore Tune's state?, the spec dict to run with).

    Raises ConfigError for a name that is taken (no --resume), nothing to resume, or a
    changed space; SweepFinished when a finished sweep is resumed."""
    exp_dir = Path(exp_dir)
    state = read_state(exp_dir)
    restorable = tune.Tuner.can_restore(str(exp_dir)) and any(
        exp_dir.glob("experiment_state-*.json")
    )
    name, where = exp_dir.name, exp_dir.parent
    if not resume:
        if exp_dir.exists() and (state is not None or restorable):
            raise ConfigError(
                f"a sweep named {name!r} already exists under {where}; "
                "continue it with --resume or pick another --name"
            )
        return False, spec_dict
    if state is None and not restorable:
        raise ConfigError(f"--resume: no sweep named {name!r} to resume under {where}")
    if state is not None:
        changed = config_diff(state["spec"], spec_dict)
        if changed:
            listing = "; ".join(changed[:20])
            if not force:
                raise ConfigError(
                    f"--resume: sweep {name!r} was started with another space ({listing}). "
                    "Resume with the file and options it was started with, pick another "
                    "--name for a new sweep, or pass --force-resume to continue it as it was "
                    "started (the changes are ignored)"
                )
            print(f"warning: --force-resume: continuing {name!r} as started; ignored: {listing}")
        if state["status"] == FINISHED:
            raise SweepFinished(
                f"sweep {name!r} already finished ({state.get('num_trials', '?')} trials, "
                f"MLflow parent run {state.get('parent_run_id', '?')}); nothing to resume"
            )
        spec_dict = state["spec"]
    # killed before Tune saved any state: nothing ran yet, so start it afresh
    return restorable, spec_dict


def tune_trial_ids(exp_dir: Path) -> set[str]:
    """The ids of the trials in Tune's saved state of a sweep."""
    return {t.trial_id for t in tune.ExperimentAnalysis(str(exp_dir)).trials}
