"""The compat room (sweep/compat): every private reach-in into Ray, Optuna and MLflow is a
registered shim whose probe passes on the installed versions, the versions are the ones
pyproject.toml pins, nothing outside the room touches those internals, and an internal
that moved fails loudly, naming the shim."""

from __future__ import annotations

import ast
import logging
import re

import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from helpers import REPO
from sweep.compat import CHECKED_ON, SHIMS, CompatError, verify_all
from sweep.compat.guard import Shim, check, installed, series
from sweep.compat.ray_tune import asha_num_stopped, asha_rungs
from sweep.runtime.local_ray import keep_secrets_out_of_runtime_envs

# The framework internals the shims use: no file of sweep/ outside compat/ may name them.
INTERNALS = {
    "_brackets",
    "_rungs",
    "_trial_info",
    "_num_stopped",
    "_metric_op",
    "_time_attr",
    "_ot_study",
    "_ot_trials",
    "_completed_trials",
    "_local_tuner",
    "_run_config",
    "_tune_config",
    "_shutdown_event",
    "_process",
    "_contains",
    "_backend",
    "ENV_VARS_TO_PROPAGATE",
    "_node_ip_address",
    "_temp_dir",
    "mlflow_logger",
}


def test_every_shim_probes_clean_on_the_installed_versions():
    assert len(SHIMS) >= 12  # the room is loaded: ASHA, Tuner, ray.init, OptunaSearch, MLflow
    assert {s.package for s in SHIMS.values()} == {"ray", "optuna", "mlflow"}
    assert verify_all() == {}
    keep_secrets_out_of_runtime_envs()  # what starting Ray does: the probes still pass after
    assert verify_all() == {}


def test_installed_versions_are_the_pinned_checked_series():
    text = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; the pins are one line each
    for package, checked in CHECKED_ON.items():
        pin = re.search(rf'^\s*"({package}(\[\w+\])?[<>=][^"]*)"', text, re.M).group(1)
        major, minor = map(int, checked.split("."))
        assert f">={checked}" in pin and f"<{major}.{minor + 1}" in pin, pin
        assert series(installed(package)) == checked, (package, installed(package))


def test_no_framework_internal_outside_the_compat_room():
    found = []
    for path in sorted((REPO / "sweep").rglob("*.py")):
        if "compat" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "attr", None) or getattr(node, "arg", None)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value
            if name in INTERNALS:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert found == []


def test_a_moved_internal_is_an_error_naming_the_shim():
    # FIFO has no rung records: what asha_rungs meets when ASHA's internals move
    with pytest.raises(CompatError) as err:
        asha_rungs(FIFOScheduler())
    message = str(err.value)
    assert "sweep.compat.ray_tune.asha_rungs" in message
    assert f"written for ray {CHECKED_ON['ray']}.x, running on ray {installed('ray')}" in message
    assert "_brackets" in message and "sweep/compat" in message


def test_another_version_runs_the_probe_first(caplog):
    moved = Shim("tests.moved", "ray", "nothing", lambda: FIFOScheduler()._brackets)
    check(moved, found="2.60.9")  # the checked series: no probe, no word
    with pytest.raises(CompatError, match=r"tests\.moved: written for ray 2\.60\.x, running on "):
        check(moved, found="2.99.0")
    fine = Shim("tests.fine", "ray", "nothing", lambda: ASHAScheduler()._brackets)
    with caplog.at_level(logging.WARNING, logger="nrfer.sweep"):
        check(fine, found="2.99.0")
    assert "tests.fine was checked on ray 2.60.x; ray 2.99.0 passes its probe" in caplog.text


def test_the_asha_shims_read_and_write_tunes_own_records():
    asha = ASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
    asha.set_search_properties("val_acc", "max")
    rungs = asha_rungs(asha)
    rungs[0][-1][1]["t1"] = 0.5  # the lowest rung of the first bracket
    assert asha._brackets[0]._rungs[-1][1] == {"t1": 0.5}
    assert asha_num_stopped(asha, 3) == 3 and asha._num_stopped == 3
