"""The LCBench reader against yahpo-gym's own numbers, and one pinned replay per arm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from lcbench import PARAMS, Y_NAMES, LCBench  # noqa: E402

REFERENCE = json.loads((BENCH / "lcbench_data" / "reference.json").read_text())["rows"]


@pytest.fixture(scope="module")
def bench() -> LCBench:
    return LCBench()


def test_reader_equals_yahpo_gym_on_every_task(bench):
    # 680 points made by yahpo-gym 1.0.2's objective_function: 34 tasks x 4 configs x 5 epochs
    assert {r["task"] for r in REFERENCE} == set(bench.tasks) and len(bench.tasks) == 34
    assert {r["epoch"] for r in REFERENCE} == {1, 2, 13, 27, 52}
    worst = 0.0
    for r in REFERENCE:
        got = bench.query(r["task"], r["config"], r["epoch"])
        assert list(got) == list(Y_NAMES)
        worst = max(worst, max(abs(got[k] - r["outputs"][k]) for k in Y_NAMES))
    assert worst <= 1e-4
    # whole curves in one call agree with single points
    r = REFERENCE[0]
    curve = bench.curves(r["task"], [r["config"]])[0]
    assert curve.shape == (52, 6)
    assert np.allclose(curve[r["epoch"] - 1], [r["outputs"][k] for k in Y_NAMES], atol=1e-4)


def test_query_from_the_command_line_and_its_errors():
    r = next(x for x in REFERENCE if x["epoch"] == 52)
    cmd = [sys.executable, str(BENCH / "lcbench.py"), "query", "--task", str(r["task"])]
    out = subprocess.run(
        [*cmd, "--epoch", "52", "--config", json.dumps(r["config"])],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout)
    assert list(got) == list(Y_NAMES)
    assert abs(got["val_accuracy"] - r["outputs"]["val_accuracy"]) <= 1e-4
    bad = {**r["config"], "max_units": 5000}
    for args, says in (
        (["--epoch", "52", "--config", json.dumps(bad)], "max_units = 5000: outside [64, 1024]"),
        (["--epoch", "60", "--config", json.dumps(r["config"])], "epoch = 60: outside [1, 52]"),
        (["--epoch", "1", "--config", "{}"], "missing ['batch_size'"),
        (["--epoch", "1", "--config", "{nope"], "--config: not JSON"),
    ):
        res = subprocess.run([*cmd, *args], capture_output=True, text=True)
        assert res.returncode == 2 and says in res.stderr, res.stderr
        assert res.stdout == ""
    res = subprocess.run(
        [*cmd[:3], "--task", "1", "--epoch", "1", "--config", json.dumps(r["config"])],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "task 1: not an LCBench task" in res.stderr


def test_sampled_configs_lie_in_the_space(bench):
    configs = bench.sample(np.random.default_rng(0), 500)
    for name in PARAMS:
        h = bench.space[name]
        values = np.array([c[name] for c in configs])
        assert values.min() >= h["lower"] and values.max() <= h["upper"], name
        if h["log"]:  # log-uniform: about half the draws below the geometric middle
            mid = np.sqrt(h["lower"] * h["upper"])
            assert 0.4 < (values < mid).mean() < 0.6, name


def test_one_seed_per_arm_replays_as_pinned(bench):
    # same seed, same trials, same decisions: a change to a searcher or a scheduler (ours or a
    # peer's) shows up here; `python bench/lcbench_replay.py pin` remakes the file on purpose
    import lcbench_replay

    pinned = json.loads(lcbench_replay.PINNED.read_text())
    got = lcbench_replay.pin(bench)
    assert got["budget_s"] == pinned["budget_s"]
    assert list(got["arms"]) == list(pinned["arms"]) == list(lcbench_replay.ARMS)
    for arm, want in pinned["arms"].items():
        assert got["arms"][arm] == want, arm
    # and the pinned decisions are the kind each rule makes: FIFO runs every trial to the
    # end, ASHA stops only at its rungs, the adaptive rule's first rung is where it stops first
    arms = pinned["arms"]
    assert set(arms["FIFO + TPE"]["ended"]) == {52}
    assert set(arms["ASHA + TPE (rungs 1/3/9/27)"]["ended"]) <= {1, 3, 9, 27, 52}
    first = arms["adaptive + TPE (default)"]["first_rung"]
    assert isinstance(first, int) and min(arms["adaptive + TPE (default)"]["ended"]) >= first
