"""The sweep driver: Ray Tune (OptunaSearch TPE + ASHA/FIFO) over nrfer trials, tracked in MLflow.

The dataset is read once here and handed to every trial through Ray's object store
(`tune.with_parameters`); each trial runs `nrfer.train.fit` with a callback that reports
every epoch's metrics and checkpoint to Tune (and to its MLflow run), and restores from
`tune.get_checkpoint()` when Ray retries it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
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
from nrfer.sr import apply_sr, ensure_sr
from nrfer.train import fit
from sweep.report import write_report
from sweep.space import SweepSpec, apply_params
from sweep.tracking import (
    WORKER_HTTP_ENV,
    SchedulerStateCallback,
    SweepTracker,
    TrialLogger,
    TrialStatusCallback,
    replay,
    tracking_uri,
)

RESULT_KEYS = ("val_acc", "val_macro_f1", "val_loss", "train_loss", "best_val_acc", "epoch")
WORST = {
    "val_acc": 0.0,
    "val_macro_f1": 0.0,
    "val_loss": float("inf"),
    "best_val_acc": 0.0,
    "diverged": True,
}
SCHEDULER_STATE = "nrfer_scheduler_state.pkl"
METRIC_RECORDS = "mlflow_backlog"  # trials' local metric records while MLflow is unreachable
LOCAL_RAY_IP = "127.0.0.2"  # a local run listens on loopback only


def run_trial(params: dict[str, Any], base: dict, data: FERData, tracking: dict) -> None:
    """The Tune function trainable: one nrfer trial; `params` holds the sampled values."""
    cfg = apply_params(base, params)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # Ray retried this trial: continue after its last epoch
        with checkpoint.as_directory() as d:
            resume = load_checkpoint(Path(d) / "last.pt")
    for k, v in WORKER_HTTP_ENV.items():
        os.environ.setdefault(k, v)
    trial_id = tune.get_context().get_trial_id()
    logger = TrialLogger(tracking, trial_id, Path(tracking["record_dir"]) / f"{trial_id}.jsonl")
    logger.start(cfg.flat(), params)
    if cfg.data.sr.method != "none":  # the driver built this cache before any trial started
        data = apply_sr(data, cfg.data.sr, show_progress=False)
        logger.set_tag("nrfer.sr_build_id", data.meta["sr"]["build_id"])
    if resume is not None:  # visible in the UI: this attempt continued after a lost worker
        logger.set_tag("nrfer.resumed_after_epoch", str(resume["epoch"]))
    logger.log_dict(cfg.to_dict(), "config.yaml")  # the exact config, for reproduce-best

    def report(metrics: dict, ckpt_dir: Path) -> None:
        logger.log_epoch(
            {k: metrics[k] for k in RESULT_KEYS if k != "epoch"}, step=metrics["epoch"]
        )
        if metrics["improved"]:
            logger.log_artifacts(ckpt_dir.parent / "previews", "previews")
        tune.report(
            {k: metrics[k] for k in RESULT_KEYS},
            checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)),
        )

    with tempfile.TemporaryDirectory(prefix="nrfer-trial-") as out:
        try:
            fit(cfg, data=data, callback=report, resume=resume, out_dir=out, evaluate_test=False)
        except FloatingPointError:  # diverged: a bad config, not a crash; retrying cannot help
            logger.fail(traceback.format_exc(), diverged=True)
            tune.report(dict(WORST))  # the searcher and ASHA see it as the worst result
            return
        logger.finish({"checkpoint": Path(out) / "checkpoint" / "best.pt"})


def build_sr_caches(spec: SweepSpec, base: dict, data: FERData) -> dict[str, dict]:
    """Build (or reuse) the SR cache of every SR setting a trial may ask for, once, before
    any trial runs: trials then only read them. Returns cache folder -> manifest."""
    builds = {}
    for sr in spec.sr_settings(base):
        folder, manifest, built = ensure_sr(data, sr)
        print(f"SR cache {sr.method} x{sr.scale}: {'built' if built else 'reused'} {folder}")
        builds[str(folder)] = manifest
    return builds


def build_searcher(spec: SweepSpec):
    if spec.searcher == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=spec.seed, n_startup_trials=min(4, spec.num_samples)
        )
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


def check_resources(spec: SweepSpec) -> None:
    total = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        need = spec.resources[key]
        if need > total.get(name, 0):
            raise ConfigError(
                f"{spec.source}: resources.{key}: a trial asks for {need} {name}, "
                f"the Ray cluster has {total.get(name, 0)}"
            )


def init_ray(address: str | None, verbose: int) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=verbose > 1)
    else:
        ray.init(include_dashboard=False, log_to_driver=verbose > 1, _node_ip_address=LOCAL_RAY_IP)


def _restored_scheduler(tuner):
    """The scheduler object inside a restored Tuner (Ray keeps no public handle to it)."""
    internal = getattr(tuner, "_local_tuner", None)
    return getattr(getattr(internal, "_tune_config", None), "scheduler", None)


def _unfinished(spec: SweepSpec, wall_s: float, runs: dict) -> int:
    """Trials still to run when fit() returned: > 0 after an interrupt (SIGINT), which Tune
    answers by saving its state and returning early. Counted from the trials' MLflow runs
    (a trial ended when its run is FINISHED or FAILED; Tune itself marks an interrupted
    trial TERMINATED). A spent time budget is not an interrupt."""
    if spec.time_budget_s and wall_s >= spec.time_budget_s:
        return 0
    ended = sum(r.info.status in ("FINISHED", "FAILED") for r in runs.values())
    return max(spec.num_samples - ended, 0)


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
            f"a sweep named {spec.name!r} already exists under {storage_path}; "
            "continue it with --resume or pick another --name"
        )

    # Setup: data once in the driver, Ray, the parent run.
    base = spec.base_config()
    base["train"] = {**base.get("train", {}), "num_threads": max(1, int(spec.resources["cpu"]))}
    # trials run in their own folders: the SR cache folder must not be relative
    data_cfg = make_config(base, spec.source).data
    base["data"] = {
        **base.get("data", {}),
        "sr": {
            **base["data"].get("sr", {}),
            "cache_dir": str(Path(data_cfg.sr.cache_dir).resolve()),
        },
    }
    t0 = time.perf_counter()
    data = load_data(data_cfg, sr=False)  # shared by all trials; each applies its SR stage
    sr_builds = build_sr_caches(spec, base, data)
    data_s = time.perf_counter() - t0
    init_ray(address, verbose)
    check_resources(spec)
    tracker = SweepTracker(uri, spec.name, spec.name)
    parent = tracker.start_parent(spec.to_dict(), space_file, str(exp_dir))
    if resume:
        tracker.close_open_trials("KILLED")  # runs the killed driver left open

    # Tuner: new, or restored with the searcher state and our saved scheduler state.
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=base,
            data=data,
            tracking={**tracker.context(), "record_dir": str(exp_dir / METRIC_RECORDS)},
        ),
        {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]},
    )
    state_file = exp_dir / SCHEDULER_STATE
    if resume:
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
        scheduler = _restored_scheduler(tuner)
        if isinstance(scheduler, ASHAScheduler) and state_file.is_file():
            scheduler.restore(str(state_file))
    else:
        scheduler = build_scheduler(spec)
    callbacks = [TrialStatusCallback(tracker, spec.max_epochs)]
    if isinstance(scheduler, ASHAScheduler):  # FIFO has no state to keep
        exp_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(SchedulerStateCallback(scheduler, state_file))
    if not resume:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(spec),
                scheduler=scheduler,
                metric=spec.metric,
                mode=spec.mode,
                num_samples=spec.num_samples,
                time_budget_s=spec.time_budget_s,
                # a new worker process costs seconds of imports (torch, timm, mlflow) per trial
                reuse_actors=spec.reuse_workers,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=str(storage_path),
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=verbose,
            ),
        )
    else:
        tuner._local_tuner._run_config.callbacks = (
            callbacks  # restored RunConfig has pickled copies
        )

    # Tune saves its experiment state (which trials finished) at most every 10 s by default;
    # a driver killed in that window would rerun a trial that had just finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Tune also snapshots after every trial checkpoint (num_to_keep=1) and warns each time
    # on short epochs; the snapshot is what makes a killed driver resumable, so keep it quiet.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    status = "FAILED"
    try:
        t1 = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - t1
        runs = tracker.trial_runs()
        unfinished = _unfinished(spec, wall, runs)
        run_ids = {tid: r.info.run_id for tid, r in runs.items()}
        with tempfile.TemporaryDirectory() as tmp:
            ranked, importance = write_report(results, spec, run_ids, Path(tmp))
            for f in Path(tmp).iterdir():
                tracker.client.log_artifact(parent, str(f), "report")
        best = ranked[0] if ranked else None
        metrics = {"num_trials": len(results), "num_errors": results.num_errors, "wall_s": wall}
        if best:
            metrics[f"best_{spec.metric}"] = best[spec.metric]
            tracker.client.set_tag(
                parent, "nrfer.best_trial_run_id", run_ids.get(best["trial_id"], "")
            )
            tracker.client.set_tag(parent, "nrfer.best_trial_id", best["trial_id"])
        for k, v in metrics.items():
            tracker.client.log_metric(parent, k, float(v))
        status = "KILLED" if unfinished else "FINISHED"
        return {
            "sweep": spec.name,
            "parent_run_id": parent,
            "tracking_uri": uri,
            "storage": str(exp_dir),
            "num_trials": len(results),
            "num_errors": results.num_errors,
            "unfinished": unfinished,
            "best": best,
            "leaderboard": ranked[:5],
            "importance": importance,
            "wall_s": wall,
            "data_load_s": data_s,
            "sr_caches": sr_builds,
            "results": results,  # Ray's ResultGrid, for callers that want every trial
        }
    finally:
        replay_records(exp_dir / METRIC_RECORDS, uri)
        tracker.close_open_trials("KILLED")
        tracker.end_parent(status)


def replay_records(folder: Path, uri: str) -> None:
    """Upload metric records that trials kept locally while MLflow was unreachable."""
    for record in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            n = replay(record, uri)
            print(f"MLflow caught up: {n} metric values from {record.name}")
        except Exception as e:  # still unreachable: the record stays for a later replay
            print(
                f"warning: {record} not uploaded ({e}); "
                f"later: python -m sweep.tracking replay {record} --tracking-uri {uri}"
            )


def print_leaderboard(summary: dict, metric: str) -> None:
    state = (
        f", {summary['unfinished']} unfinished (continue with --resume)"
        if summary["unfinished"]
        else ""
    )
    print(
        f"\nsweep {summary['sweep']}: {summary['num_trials']} trials, {summary['num_errors']} errors{state}, "
        f"{summary['wall_s']:.0f}s; MLflow parent run {summary['parent_run_id']} at {summary['tracking_uri']}"
    )
    print(f"{'rank':>4}  {metric:>10}  {'epochs':>6}  trial             config")
    for i, row in enumerate(summary["leaderboard"], start=1):
        print(
            f"{i:>4}  {row[metric]:>10.4f}  {row['epochs']:>6}  {row['trial_id']:16s}  {json.dumps(row['params'], sort_keys=True)}"
        )
    if summary["importance"]:
        print(
            "parameter importance: "
            + ", ".join(f"{k} {v:.2f}" for k, v in summary["importance"].items())
        )
