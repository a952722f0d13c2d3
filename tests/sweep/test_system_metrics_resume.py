"""A trial whose MLflow run already exists (Ray retried it, or the sweep resumed it, with or
without a checkpoint) continues its system/* steps: no (run, key, step) is logged twice
(issue 41: 24 duplicate rows after a SIGKILL and --resume)."""

import time
from collections import Counter

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sweep.tracking.system import start_monitor, stop_monitor
from sweep.tracking.trial import RunContext, TrialLogger


def test_a_reused_run_continues_its_system_steps(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    parent = client.create_run(exp).info.run_id
    ctx = RunContext(uri, exp, parent, "s", "i1")
    first = TrialLogger(ctx, "t1", tmp_path / "t1.jsonl")
    run_id = first.start(config={"a": 1}, sampled={})
    assert first.reused is False
    now = int(time.time() * 1000)
    earlier = [Metric("system/cpu_utilization_percentage", 1.0, now, s) for s in range(4)]
    client.log_batch(run_id, metrics=earlier)  # the killed attempt's samples: steps 0-3
    again = TrialLogger(ctx, "t1", tmp_path / "t1.jsonl")
    assert again.start(config={"a": 1}, sampled={}) == run_id and again.reused is True
    start_monitor(run_id, uri, 0.2, resumed=again.reused)
    time.sleep(1.0)
    stop_monitor()
    history = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    steps = Counter(m.step for m in history)
    assert len(history) > 4 and max(steps.values()) == 1, sorted(steps)
    assert min(s for s in steps if s >= 4) == 4  # the new samples follow the old ones
