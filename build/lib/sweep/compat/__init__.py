"""Every reach-in into Ray's, Optuna's and MLflow's private internals, in one room.

Each shim is a named function whose docstring says what public API is missing, registered
(`guard.shim`) with the version series it was written and checked for (`CHECKED_ON`, the
series pyproject.toml pins). Called under another version, a shim first probes the
internals it uses: one that moved is a `CompatError` naming the shim, the version found and
the one it was written for, never a resume or a tracking run that goes silently wrong.
`tests/sweep/test_compat.py` probes every shim on the installed versions.

    ray_tune.py       ASHA's rung records, a restored Tuner's callbacks and scheduler,
                      Tune's AWS copy into runtime envs, ray.init's node IP and temp folder
    ray_optuna.py     OptunaSearch's study and trial handles, its pickled state
    mlflow_system.py  MLflow's system-metrics monitor, publishing every sample at once
"""

from sweep.compat import mlflow_system, ray_optuna, ray_tune
from sweep.compat.guard import CHECKED_ON, SHIMS, CompatError, problem

__all__ = ["CHECKED_ON", "SHIMS", "CompatError", "mlflow_system", "ray_optuna", "ray_tune"]


def verify_all() -> dict[str, str]:
    """Every shim's probe on the installed versions: shim name -> problem (empty: all fine)."""
    return {name: p for name, s in sorted(SHIMS.items()) if (p := problem(s)) is not None}
