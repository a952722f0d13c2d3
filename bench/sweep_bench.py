"""Sweep overhead and search efficiency, measured with real sweeps on synthetic FER+.

    python bench/sweep_bench.py overhead     # orchestration cost as one number
    python bench/sweep_bench.py search       # ASHA + TPE vs FIFO + random, same trial count

overhead: a small sweep's wall time against (a) the sum of its trials' own training time
divided by the concurrency and (b) the same trial configs trained in a plain loop without
Ray and MLflow; Ray's and MLflow's start-up costs separately.
search: total epochs spent and best val accuracy of each arm, and the epochs each needed to
first reach the accuracy both reach (epochs-to-reach-the-same-accuracy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record  # noqa: E402


def space(name: str, root: str, samples: int, epochs: int, scheduler: str, searcher: str) -> dict:
    return {
        "name": name,
        "seed": 0,
        "searcher": searcher,
        "data": {"dataset": "synthetic", "root": root},
        "fixed": {
            "model": {"backbone": "resnet10t", "input_size": 48},
            "train": {"batch_size": 32, "device": "cpu"},
        },
        "search": {
            "model.resizer.enabled": {"choice": [True, False]},
            "model.resizer.n": {"choice": [4, 8], "when": {"model.resizer.enabled": True}},
            "loss.name": {"choice": ["ce", "focal", "fpdls"]},
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
        },
        "early_stopping": {
            "name": scheduler,
            "max_epochs": epochs,
            **({"grace_period": 1, "reduction_factor": 2} if scheduler == "asha" else {}),
        },
        "budget": {"num_samples": samples, "max_concurrent": 2},
        "resources": {"cpu": 1},
    }


def run(spec_dict: dict, tmp: Path):
    from sweep.runtime.driver import run_sweep
    from sweep.spec.space import load_space

    path = tmp / f"{spec_dict['name']}.yaml"
    path.write_text(yaml.safe_dump(spec_dict))
    t0 = time.perf_counter()
    summary = run_sweep(
        load_space(path),
        path,
        storage=str(tmp / "storage"),
        uri=f"sqlite:///{tmp / 'mlflow.db'}",
        verbose=0,
    )
    return summary, time.perf_counter() - t0


def overhead(root: str, tmp: Path) -> list[dict]:
    import ray

    from nrfer.config import make_config
    from nrfer.data import load_data
    from nrfer.train import fit
    from sweep.tracking import SweepTracker

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.2")
    ray_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    SweepTracker(f"sqlite:///{tmp / 'start.db'}", "probe", "probe", "probe")
    mlflow_start = time.perf_counter() - t0

    spec = space("overhead", root, samples=4, epochs=2, scheduler="fifo", searcher="tpe")
    summary, wall = run(spec, tmp)
    results = summary.results
    trial_time = sum(float(r.metrics["time_total_s"]) for r in results)
    ray.shutdown()

    from sweep.spec.space import apply_params, parse_space

    sweep_spec = parse_space(spec, "overhead")
    base = sweep_spec.base_config()
    base["train"] = {**base["train"], "num_threads": 1}
    data = load_data(make_config(base).data)
    t0 = time.perf_counter()
    for r in results:
        fit(
            apply_params(base, r.config),
            data=data,
            out_dir=tempfile.mkdtemp(dir=tmp),
            evaluate_test=False,
        )
    plain_seq = time.perf_counter() - t0
    ideal = trial_time / 2  # two trials at a time
    rows = [
        {
            "sweep_wall_s": wall,
            "tune_wall_s": summary.wall_s,
            "trials_sum_s": trial_time,
            "ideal_wall_s": ideal,
            "plain_loop_1core_s": plain_seq,
            "overhead_ratio": summary.wall_s / ideal,
            "ray_init_s": ray_init,
            "mlflow_start_s": mlflow_start,
            "data_load_s": summary.data_load_s,
        }
    ]
    print_table("sweep overhead (4 trials x 2 epochs, 2 concurrent, CPU)", rows)
    record("sweep_overhead", rows)
    return rows


def epochs_to_reach(results, target: float) -> int | None:
    """Cumulative epochs (all trials, in time order) until some trial first reports >= target."""
    events = sorted(
        (float(row["timestamp"]), float(row["val_acc"]))
        for r in results
        for _, row in r.metrics_dataframe.iterrows()
    )
    for i, (_, acc) in enumerate(events, start=1):
        if acc >= target - 1e-12:
            return i
    return None


def search(root: str, tmp: Path, samples: int) -> list[dict]:
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.2")
    arms = {}
    for name, sched, searcher in (("asha_tpe", "asha", "tpe"), ("fifo_random", "fifo", "random")):
        summary, wall = run(space(name, root, samples, 4, sched, searcher), tmp)
        results = summary.results
        best = max(float(r.metrics_dataframe["val_acc"].max()) for r in results)
        epochs = sum(int(r.metrics["training_iteration"]) for r in results)
        arms[name] = (results, best, epochs, wall)
    ray.shutdown()
    target = min(a[1] for a in arms.values())
    rows = [
        {
            "arm": n,
            "trials": samples,
            "total_epochs": e,
            "best_val_acc": b,
            "wall_s": w,
            "epochs_to_reach": epochs_to_reach(res, target),
            "target_acc": target,
        }
        for n, (res, b, e, w) in arms.items()
    ]
    print_table("search efficiency (synthetic FER+, same trial count)", rows)
    record("search_efficiency", rows)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("overhead", "search", "all"))
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args(argv)
    from nrfer.data.synthetic import write_ferplus

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = str(write_ferplus(tmp / "data", seed=0, n_train=800, n_val=200, n_test=200))
        if args.what in ("overhead", "all"):
            overhead(root, tmp)
        if args.what in ("search", "all"):
            search(root, tmp, args.samples)


if __name__ == "__main__":
    main()
