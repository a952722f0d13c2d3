"""A recorded cost (`<sweep>/costs/<key>.json`, a checkpoint's cost.json) is checked where it
is read: an edited or damaged file is measured again, never trusted (issue 41: `latency_ms:
-5` put a trial on the front at -5 ms while MLflow showed 75.9)."""

import json

import pytest

from sweep.runtime.trainable import read_cost

GOOD = {"params": 12345, "gflops": 0.02, "latency_ms_b1": 3.5, "latency_ms": 3.5}


def test_a_good_record_is_read_as_floats(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"architecture": [], "metrics": GOOD}))
    assert read_cost(path) == ({k: float(v) for k, v in GOOD.items()}, "")
    path.write_text(json.dumps(GOOD))  # a checkpoint's cost.json holds the metrics alone
    assert read_cost(path)[0] == {k: float(v) for k, v in GOOD.items()}


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        ({**GOOD, "latency_ms": -5}, "latency_ms: -5 is not a finite number >= 0"),
        ({**GOOD, "params": "many"}, "params: 'many' is not a finite number >= 0"),
        ({**GOOD, "params": True}, "params: True"),
        ({**GOOD, "accuracy": 0.9}, "unknown cost 'accuracy'"),
        ({}, "no cost metrics"),
    ],
)
def test_an_edited_record_is_not_trusted(tmp_path, metrics, problem):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"metrics": metrics}))
    got, why = read_cost(path)
    assert got is None and problem in why
    path.write_text("{half")
    assert read_cost(path)[0] is None and "unreadable" in read_cost(path)[1]
