"""The sweep driver: Ray Tune (OptunaSearch TPE + ASHA/FIFO) over nrfer trials, tracked in MLflow.

The dataset is read once here and handed to every trial through Ray's object store
(`tune.with_parameters`); each trial runs `nrfer.train.fit` with a callback that reports
every epoch's metrics and checkpoint to Tune and restores from `tune.get_checkpoint()`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from nrfer.checkpoint import load_checkpoint
from nrfer.config import ConfigError, make_config
from nrfer.data import FERData, load_data
from nrfer.train import fit
from sweep.space import SweepSpec
from sweep.tracking import MLflowTrialCallback, SweepTracker, tracking_uri

RESULT_KEYS = ("val_acc", "val_macro_f1", "val_loss", "train_loss", "best_val_acc", "epoch")


def run_trial(config: dict[str, Any], base: dict, data: FERData) -> None:
    """The Tune function trainable: one nrfer trial; `config` holds the sampled parameters."""
    from nrfer.config import deep_merge, set_by_path

    raw = deep_merge(base, {})
    for key, value in config.items():
        set_by_path(raw, key, value)
    cfg = make_config(raw, "trial")
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # Ray retried this trial: continue after the last epoch
        with checkpoint.as_directory() as d:
            resume = load_checkpoint(Path(d) / "last.pt")

    def report(metrics: dict, ckpt_dir: Path) -> None:
        tune.report(
            {k: metrics[k] for k in RESULT_KEYS},
            checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)),
        )

    with tempfile.TemporaryDirectory(prefix="nrfer-trial-") as out:
        fit(cfg, data=data, callback=report, resume=resume, out_dir=out, evaluate_test=False)


def build_searcher(spec: SweepSpec):
    sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=min(4, spec.num_samples))
    searcher = OptunaSearch(
        space=spec.define_by_run, metric=spec.metric, mode=spec.mode, sampler=sampler
    )
    return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)


def build_scheduler(spec: SweepSpec):
    s = spec.scheduler
    if s["name"] == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=s["max_epochs"],
            grace_period=s["grace_period"],
            reduction_factor=s["reduction_factor"],
        )
    return FIFOScheduler()


def check_storage(storage: Path) -> None:
    """Fail before any trial runs when results could not be written."""
    try:
        storage.mkdir(parents=True, exist_ok=True)
        probe = storage / ".nrfer-write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"storage path {storage} is not writable: {e}") from None
    if shutil.disk_usage(storage).free < 200 * 2**20:
        raise ConfigError(f"storage path {storage} has under 200 MiB free")


def leaderboard(results, spec: SweepSpec, top: int = 5) -> list[dict]:
    rows = []
    for r in results:
        if r.metrics and spec.metric in r.metrics:
            rows.append(
                {
                    "trial_id": r.metrics.get("trial_id"),
                    spec.metric: r.metrics[spec.metric],
                    "best_val_acc": r.metrics.get("best_val_acc"),
                    "epochs": r.metrics.get("training_iteration"),
                    "config": r.config,
                }
            )
    rows.sort(key=lambda x: x[spec.metric], reverse=spec.mode == "max")
    return rows[:top] if top else rows


def run_sweep(
    spec: SweepSpec,
    space_file: Path,
    *,
    storage: str | None = None,
    address: str | None = None,
    uri: str | None = None,
    resume: bool = False,
    verbose: int = 1,
) -> dict:
    storage_path = Path(storage or os.environ.get("NRFER_STORAGE", "runs/sweeps")).resolve()
    check_storage(storage_path)
    uri = tracking_uri(uri)
    exp_dir = storage_path / spec.name
    if resume and not tune.Tuner.can_restore(str(exp_dir)):
        raise ConfigError(f"--resume: no sweep named {spec.name!r} to resume under {storage_path}")
    if not resume and exp_dir.exists():
        raise ConfigError(
            f"a sweep named {spec.name!r} already exists under {storage_path}; use --resume or --name"
        )

    # Data once, in the driver; Ray puts it in the object store for all trials.
    base = spec.base_config()
    cpus = spec.resources["cpu"]
    base = {**base, "train": {**base.get("train", {}), "num_threads": max(1, int(cpus))}}
    t0 = time.perf_counter()
    data = load_data(make_config(base, spec.source).data)
    data_s = time.perf_counter() - t0

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=verbose > 1)
        else:
            ray.init(
                include_dashboard=False, log_to_driver=verbose > 1, _node_ip_address="127.0.0.2"
            )  # loopback only
    tracker = SweepTracker(uri, spec.name, spec.name)
    parent = tracker.start_parent(spec.to_dict(), space_file, str(exp_dir))
    if resume:
        tracker.close_open_trials("KILLED")

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, data=data),
        {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]},
    )
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=str(storage_path),
        callbacks=[MLflowTrialCallback(tracker)],
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        verbose=verbose,
    )
    status = "FAILED"
    try:
        if resume:
            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=build_searcher(spec),
                    scheduler=build_scheduler(spec),
                    metric=spec.metric,
                    mode=spec.mode,
                    num_samples=spec.num_samples,
                    time_budget_s=spec.time_budget_s,
                ),
                run_config=run_config,
            )
        t1 = time.perf_counter()
        results = tuner.fit()
        board = leaderboard(results, spec, top=0)
        best = board[0] if board else None
        summary = {
            "sweep": spec.name,
            "parent_run_id": parent,
            "tracking_uri": uri,
            "storage": str(exp_dir),
            "num_trials": len(results),
            "num_errors": results.num_errors,
            "best": best,
            "leaderboard": board[:5],
            "wall_s": time.perf_counter() - t1,
            "data_load_s": data_s,
        }
        metrics = {
            "num_trials": len(results),
            "num_errors": results.num_errors,
            "wall_s": summary["wall_s"],
        }
        if best:
            metrics[f"best_{spec.metric}"] = best[spec.metric]
        status = "FINISHED"
        tracker.end_parent("FINISHED", metrics, board)
        return summary
    finally:
        tracker.close_open_trials("KILLED" if status != "FINISHED" else "FINISHED")
        if status != "FINISHED":
            tracker.end_parent("KILLED")


def print_leaderboard(summary: dict, metric: str) -> None:
    print(
        f"\nsweep {summary['sweep']}: {summary['num_trials']} trials, {summary['num_errors']} errors, "
        f"{summary['wall_s']:.0f}s; MLflow parent run {summary['parent_run_id']} at {summary['tracking_uri']}"
    )
    print(f"{'rank':>4}  {metric:>10}  {'epochs':>6}  config")
    for i, row in enumerate(summary["leaderboard"], start=1):
        print(
            f"{i:>4}  {row[metric]:>10.4f}  {row['epochs']!s:>6}  {json.dumps(row['config'], sort_keys=True)}"
        )
