"""Driver overhead against plain Ray Tune, on the same trials, side by side in one process.

    python bench/overhead.py                         # N = 10, 40, 160; 3 epochs; 2 at a time
    python bench/overhead.py --trials 30 --epochs 4

Both arms run the same tiny nrfer training (`nrfer.train.fit` of a one-block ViT on 64
synthetic faces: ~0.1 s an epoch) on the same data, the same N, concurrency and worker reuse,
in the same local Ray:
- anchor: `tune.Tuner` + Ray's `OptunaSearch` (TPE, in memory) + `ASHAScheduler` +
  `MLflowLoggerCallback` (SQLite), the trainable reporting each epoch, no checkpoints;
- ours: `sweep.runtime.driver.run_sweep` (our searcher on its SQLite study, resumable ASHA, parent
  and nested MLflow runs with params, tags, datasets, system metrics, config and previews,
  an epoch checkpoint per report, the retention of sweep.runtime.retention).
Reported per arm: s/trial over Tune's fit (and in the first and last quarter of the trials,
from the runs' end times: flat is what "stays flat as N grows" means), start-up before the
first trial, driver RSS, and for ours where the time goes (the driver's trial-end callback,
a trial's time outside its epochs).
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
SYNTH = {"seed": 3, "n_train": 64, "n_val": 32, "n_test": 32}


def space(n: int, epochs: int, concurrent: int, root: str) -> dict:
    return {
        "name": f"ours-{n}",
        "seed": 0,
        "searcher": "tpe",
        "data": {"dataset": "synthetic", "root": root, "synthetic": SYNTH},
        "fixed": {
            "model": {"backbone": "vit_tiny_patch16_224", "backbone_args": TINY_VIT},
            "train": {"batch_size": 64, "device": "cpu", "num_threads": 1},
        },
        "search": {
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
            "model.resizer.enabled": {"choice": [True, False]},
        },
        "early_stopping": {
            "name": "asha",
            "max_epochs": epochs,
            "grace_period": 1,
            "reduction_factor": 2,
        },
        "budget": {"num_samples": n, "max_concurrent": concurrent},
        "resources": {"cpu": 1},
    }


class Rss(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.samples, self.done = psutil.Process(), [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), self.proc.memory_info().rss / 2**20))
            self.done.wait(0.5)

    def window(self, t0: float, t1: float) -> dict:
        s = [m for t, m in self.samples if t0 <= t <= t1] or [0.0]
        q = max(1, len(s) // 4)
        return {
            "rss_peak_mib": max(s),
            "rss_growth_mib": sum(s[-q:]) / q - sum(s[:q]) / q,
        }


def quarters(ends: list[float]) -> tuple[float, float]:
    """s/trial between trial ends in the first and in the last quarter of the sweep."""
    ends = sorted(ends)
    q = max(1, len(ends) // 4)
    if len(ends) < 4:
        return float("nan"), float("nan")
    first = (ends[q] - ends[0]) / q
    last = (ends[-1] - ends[-1 - q]) / q
    return first, last


def anchor_trainable(config, base: dict, data):
    from ray import tune

    from nrfer.train import fit
    from sweep.spec.space import apply_params

    cfg = apply_params(base, config)

    def report(metrics, _paths):
        tune.report({k: metrics[k] for k in ("val_acc", "val_loss", "train_loss", "epoch")})

    with tempfile.TemporaryDirectory() as out:
        fit(cfg, data=data, callback=report, out_dir=out, evaluate_test=False)


def run_anchor(
    n: int, epochs: int, concurrent: int, base: dict, data, tmp: Path, uri: str | None = None
) -> dict:
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    tmp.mkdir(parents=True, exist_ok=True)
    uri = uri or f"sqlite:///{tmp / 'anchor.db'}"
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(anchor_trainable, base=base, data=data), {"cpu": 1}
        ),
        param_space={
            "optim.lr": tune.loguniform(1e-4, 1e-2),
            "model.resizer.enabled": tune.choice([True, False]),
        },
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(
                OptunaSearch(metric="val_acc", mode="max", seed=0), max_concurrent=concurrent
            ),
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=2
            ),
            metric="val_acc",
            mode="max",
            num_samples=n,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"anchor-{n}",
            storage_path=str(tmp / "storage"),
            callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name=f"anchor-{n}")],
            verbose=0,
        ),
    )
    t1 = time.perf_counter()
    results = tuner.fit()
    fit_s = time.perf_counter() - t1
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"anchor-{n}")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    ends = [r.info.end_time / 1000 for r in runs if r.info.end_time]
    first, last = quarters(ends)
    return {
        "arm": "anchor",
        "trials": n,
        "errors": results.num_errors,
        "runs": len(runs),
        "fit_s": fit_s,
        "s_per_trial": fit_s / n,
        "first_quarter_s_per_trial": first,
        "last_quarter_s_per_trial": last,
        "startup_s": t1 - t0,
        "total_s": time.perf_counter() - t0,
    }


def run_ours(
    n: int, epochs: int, concurrent: int, root: str, tmp: Path, uri: str | None = None
) -> dict:
    from mlflow.tracking import MlflowClient

    from sweep.runtime import driver
    from sweep.runtime import lifecycle as sweep_run
    from sweep.spec.space import load_space

    spent = {"callback_s": 0.0, "callbacks": 0}
    original = sweep_run.TrialStatusCallback.on_trial_complete

    def timed(self, *a, **k):  # the driver's work per ended trial
        t = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            spent["callback_s"] += time.perf_counter() - t
            spent["callbacks"] += 1

    sweep_run.TrialStatusCallback.on_trial_complete = timed
    from sweep.runtime import search

    suggest = search.SweepSearch.suggest
    asked = {"s": 0.0, "n": 0}

    def timed_suggest(self, trial_id):  # our searcher on its SQLite study
        t = time.perf_counter()
        try:
            return suggest(self, trial_id)
        finally:
            asked["s"] += time.perf_counter() - t
            asked["n"] += 1

    search.SweepSearch.suggest = timed_suggest
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"ours-{n}.yaml"
    path.write_text(yaml.safe_dump(space(n, epochs, concurrent, root)))
    uri = uri or f"sqlite:///{tmp / 'ours.db'}"
    t0 = time.perf_counter()
    try:
        summary = driver.run_sweep(
            load_space(path), path, storage=str(tmp / "storage"), uri=uri, verbose=0
        )
    finally:
        sweep_run.TrialStatusCallback.on_trial_complete = original
        search.SweepSearch.suggest = suggest
    total = time.perf_counter() - t0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"ours-{n}")
    runs = [
        r
        for r in client.search_runs([exp.experiment_id], max_results=5000)
        if r.data.tags.get("nrfer.role") == "trial"
    ]
    ends = [r.info.end_time / 1000 for r in runs if r.info.end_time]
    first, last = quarters(ends)
    # a trial's time outside its epochs (MLflow set-up, checkpoints, data, monitor)
    outside = []
    for r in runs:
        epochs_s = sum(m.value for m in client.get_metric_history(r.info.run_id, "epoch_time_s"))
        if r.info.end_time:
            outside.append((r.info.end_time - r.info.start_time) / 1000 - epochs_s)
    return {
        "arm": "ours",
        "trials": n,
        "errors": summary.num_errors,
        "runs": len(runs),
        "fit_s": summary.wall_s,
        "s_per_trial": summary.wall_s / n,
        "first_quarter_s_per_trial": first,
        "last_quarter_s_per_trial": last,
        "startup_s": total - summary.wall_s,
        "total_s": total,
        "driver_callback_s_per_trial": spent["callback_s"] / max(spent["callbacks"], 1),
        "trial_outside_epochs_s": sum(outside) / max(len(outside), 1),
        "suggest_s_per_trial": asked["s"] / max(asked["n"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, nargs="+", default=[10, 40, 160])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--name", default="driver_overhead")
    args = ap.parse_args(argv)

    import ray

    from nrfer.config import make_config
    from nrfer.data import load_data
    from nrfer.data.synthetic import write_ferplus
    from sweep.runtime.local_ray import init_ray

    tmp = Path(tempfile.mkdtemp(prefix="nrfer-overhead-"))
    root = str(write_ferplus(tmp / "ferplus", seed=3, n_train=64, n_val=32, n_test=32))
    spec = space(1, args.epochs, args.concurrent, root)
    base = make_config(
        {
            "data": spec["data"],
            **spec["fixed"],
            "train": {**spec["fixed"]["train"], "epochs": args.epochs},
        }
    ).to_dict()
    data = load_data(make_config(base).data)
    rss = Rss()
    rss.start()
    init_ray(verbose=0, num_cpus=args.concurrent)
    rows = []
    try:
        for n in args.trials:
            for arm in ("anchor", "ours"):
                t0 = time.time()
                row = (
                    run_anchor(n, args.epochs, args.concurrent, base, data, tmp / f"a{n}")
                    if arm == "anchor"
                    else run_ours(n, args.epochs, args.concurrent, root, tmp / f"o{n}")
                )
                row.update(rss.window(t0, time.time()))
                rows.append(row)
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
            a, o = rows[-2], rows[-1]
            o["ratio_vs_anchor"] = o["s_per_trial"] / a["s_per_trial"]
            print(
                f"N={n}: ours {o['s_per_trial']:.3f} s/trial, anchor {a['s_per_trial']:.3f}: "
                f"{o['ratio_vs_anchor']:.2f}x"
            )
    finally:
        ray.shutdown()
        rss.done.set()
    print_table(f"driver overhead ({args.epochs} epochs, {args.concurrent} at a time)", rows)
    record(args.name, rows, {"epochs": args.epochs, "concurrent": args.concurrent})
    return 0 if all(r["errors"] == 0 and r["runs"] == r["trials"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
