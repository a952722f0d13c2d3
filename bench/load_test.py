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
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also run the same sweep with a new worker process per trial (the baseline) "
        "in this process, and report the ratio",
    )
    args = ap.parse_args(argv)
    runs = [False, True] if args.compare else [not args.no_reuse]
    rows = [run_load(args.trials, args.concurrent, reuse) for reuse in runs]
    if args.compare:
        ratio = rows[0]["wall_s"] / rows[1]["wall_s"]
        print(f"\nworker reuse: {ratio:.2f}x faster than a new worker per trial")
        record("load_test_compare", rows, {"speedup_reuse": ratio})
    return 0 if all(r["ok"] for r in rows) else 1


def run_load(trials: int, concurrent: int, reuse: bool) -> dict:
    import ray
    from mlflow.tracking import MlflowClient

    from nrfer.data.synthetic import write_ferplus
    from sweep.runtime.driver import run_sweep
    from sweep.runtime.local_ray import LOCAL_RAY_IP
    from sweep.spec.space import load_space

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
        "early_stopping": {"name": "fifo", "max_epochs": 1},
        "budget": {"num_samples": trials, "max_concurrent": concurrent, "reuse_workers": reuse},
        "resources": {"cpu": 1},
    }
    path = tmp / "load.yaml"
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"

    sampler = MemorySampler()
    sampler.start()
    ray.init(
        num_cpus=concurrent,
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
    runs_ = [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]
    ids = [r.data.tags["nrfer.trial_id"] for r in runs_]
    finished = sum(r.info.status == "FINISHED" for r in runs_)
    with_epoch = sum(len(client.get_metric_history(r.info.run_id, "val_acc")) == 1 for r in runs_)

    # memory during the sweep: first vs last quarter of the trial phase
    during = [(t, m) for t, m in sampler.samples if t >= t0]
    q = max(1, len(during) // 4)
    first_q = sum(m for _, m in during[:q]) / q
    last_q = sum(m for _, m in during[-q:]) / q
    row = {
        "trials": trials,
        "concurrent": concurrent,
        "reuse_workers": reuse,
        "child_runs": len(runs_),
        "distinct_trials": len(set(ids)),
        "finished": finished,
        "with_epoch_logged": with_epoch,
        "ray_errors": summary.num_errors,
        "wall_s": wall,
        "s_per_trial": wall / trials,
        "driver_rss_peak_mib": max(m for _, m in sampler.samples),
        "driver_rss_first_quarter_mib": first_q,
        "driver_rss_last_quarter_mib": last_q,
        "rss_growth_mib_per_10_trials": (last_q - first_q) / (trials * 0.75) * 10,
    }
    row["ok"] = len(runs_) == len(set(ids)) == finished == with_epoch == trials
    print_table(f"load test ({trials} trials x 1 epoch, {concurrent} at a time)", [row])
    record("load_test" + ("" if reuse else "_no_reuse"), [row])
    print("PASS" if row["ok"] else "FAIL: runs lost, duplicated or not finished")
    return row


if __name__ == "__main__":
    raise SystemExit(main())
