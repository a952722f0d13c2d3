"""Load test: many short trials through the real stack (Ray Tune + Optuna + MLflow).

    python bench/load_test.py                    # 50 trials x 1 epoch, 2 at a time
    python bench/load_test.py --trials 200 --concurrent 4

Checks that every trial has exactly one MLflow child run, FINISHED, with its epoch logged,
and samples the driver's resident memory every 0.5 s: the peak, and the growth per 10
trials between the first and the last quarter of the sweep (flat = close to 0). Writes the
numbers to bench/results.json (section load_test).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record  # noqa: E402

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


class MemorySampler(threading.Thread):
    """The driver's RSS (MiB) every `every` seconds, with a timestamp."""

    def __init__(self, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.every, self.samples = psutil.Process(), every, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), self.proc.memory_info().rss / 2**20))
            self.done.wait(self.every)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--no-reuse", action="store_true", help="a new worker process per trial")
    args = ap.parse_args(argv)

    import ray
    from mlflow.tracking import MlflowClient

    from nrfer.data.synthetic import write_ferplus
    from sweep.driver import LOCAL_RAY_IP, run_sweep
    from sweep.space import load_space

    tmp = Path(tempfile.mkdtemp(prefix="nrfer-load-"))
    root = write_ferplus(tmp / "ferplus", seed=3, n_train=300, n_val=100, n_test=100)
    spec = {
        "name": "load",
        "seed": 0,
        "searcher": "random",
        "data": {"dataset": "synthetic", "root": str(root)},
        "fixed": {
            "model": {"backbone": "vit_tiny_patch16_224", "backbone_args": TINY_VIT},
            "train": {"batch_size": 64, "device": "cpu"},
        },
        "search": {
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
            "model.resizer.enabled": {"choice": [True, False]},
        },
        "scheduler": {"name": "fifo", "max_epochs": 1},
        "budget": {
            "num_samples": args.trials,
            "max_concurrent": args.concurrent,
            "reuse_workers": not args.no_reuse,
        },
        "resources": {"cpu": 1},
    }
    path = tmp / "load.yaml"
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"

    sampler = MemorySampler()
    sampler.start()
    ray.init(
        num_cpus=args.concurrent,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address=LOCAL_RAY_IP,
    )
    t0 = time.time()
    try:
        summary = run_sweep(
            load_space(path), path, storage=str(tmp / "storage"), uri=uri, verbose=0
        )
    finally:
        ray.shutdown()
        sampler.done.set()
        sampler.join()
    wall = time.time() - t0

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("load")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    trials = [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]
    ids = [r.data.tags["nrfer.trial_id"] for r in trials]
    finished = sum(r.info.status == "FINISHED" for r in trials)
    with_epoch = sum(len(client.get_metric_history(r.info.run_id, "val_acc")) == 1 for r in trials)

    # memory during the sweep: first vs last quarter of the trial phase
    during = [(t, m) for t, m in sampler.samples if t >= t0]
    q = max(1, len(during) // 4)
    first_q = sum(m for _, m in during[:q]) / q
    last_q = sum(m for _, m in during[-q:]) / q
    row = {
        "trials": args.trials,
        "concurrent": args.concurrent,
        "reuse_workers": not args.no_reuse,
        "child_runs": len(trials),
        "distinct_trials": len(set(ids)),
        "finished": finished,
        "with_epoch_logged": with_epoch,
        "ray_errors": summary["num_errors"],
        "wall_s": wall,
        "s_per_trial": wall / args.trials,
        "driver_rss_peak_mib": max(m for _, m in sampler.samples),
        "driver_rss_first_quarter_mib": first_q,
        "driver_rss_last_quarter_mib": last_q,
        "rss_growth_mib_per_10_trials": (last_q - first_q) / (args.trials * 0.75) * 10,
    }
    print_table(f"load test ({args.trials} trials x 1 epoch, {args.concurrent} at a time)", [row])
    record("load_test" + ("_no_reuse" if args.no_reuse else ""), [row])
    ok = len(trials) == len(set(ids)) == finished == with_epoch == args.trials
    print("PASS" if ok else "FAIL: runs lost, duplicated or not finished")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
