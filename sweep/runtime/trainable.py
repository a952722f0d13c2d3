"""The Tune function trainable: one nrfer trial, reporting every epoch to Tune and MLflow.

An epoch reaches MLflow only after `tune.report` has handed its checkpoint to Tune, so a
killed sweep never logs an epoch that its resume will run again. What a kill leaves
unlogged is in the checkpoint's `history.json`: the trial logs it when it resumes, and the
driver logs it for a trial that the scheduler stopped (its report never returns).

A trial works in `<storage>/<sweep>/work/<trial_id>` (sweep.runtime.retention): the same folder
for each attempt, so a retried or resumed trial finds its best.pt there; Tune's checkpoint
holds last.pt (model, optimiser, schedule) and the history only, moved out of that folder
for Tune to copy. The driver deletes the folder when the trial ends.

A trial that completed before a killed driver could have Tune save that is run again by
the resume (Tune's state has it running): its trainable returns at once, and the driver
gives it back the result it ended with (sweep.runtime.ledger).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from nrfer.checkpoint import load_checkpoint
from nrfer.config import absolute_path
from nrfer.data import FERData
from nrfer.data.identity import identity
from nrfer.device import resolve_device
from nrfer.evaluate import evaluate_state, save_predictions
from nrfer.models.pretrained import resolve_weights
from nrfer.sr import apply_sr
from nrfer.train import FitResult, RunPaths, fit
from sweep.analysis.study import CELL_TAG, SEED_TAG
from sweep.runtime.console import ON_GPU_KEY
from sweep.runtime.cost_gate import DeviceGate, Load
from sweep.runtime.ledger import completed_result
from sweep.runtime.retention import work_dir
from sweep.runtime.stopping.asha import METRIC_WORST
from sweep.spec.space import SEED_KEY, apply_params
from sweep.tracking import EPOCH_KEYS, HISTORY_FILE, WORKER_HTTP_ENV, TrialLogger
from sweep.tracking.system import PeakMemory, start_monitor, stop_monitor
from sweep.tracking.trial import RunContext
from sweep.tracking.ui import run_name, trial_number

log = logging.getLogger("nrfer.sweep")

RESULT_KEYS = (*EPOCH_KEYS, "epoch")
TIMING_KEYS = ("epoch_time_s", "images_per_s")  # logged to MLflow, not reported to Tune
TUNE_DIR = "tune_checkpoint"  # in the work folder: what the next report hands to Tune
COST_FILE = "cost.json"  # in Tune's checkpoint: a resumed trial keeps the cost it measured
COSTS_DIR = "costs"  # in the sweep's folder: each architecture's cost, measured once
STUDY_TEST_KEYS = ("test_acc", "test_macro_f1", "test_mean_class_acc", "test_ece", "test_nll")
STUDY_OPTIONAL_KEYS = ("test_vote_tv",)  # where the test split has annotator votes
# the worst result (what a diverged trial reports): the searcher and ASHA rank it last
WORST = {**METRIC_WORST, "best_val_acc": 0.0, "diverged": True}


@dataclass(frozen=True)
class TrialContext:
    """What the driver hands every trial besides the data (pickled once into Ray's object
    store with `tune.with_parameters`)."""

    run: RunContext  # where the trial's MLflow run goes
    exp_dir: str  # the sweep's folder: each trial works in exp_dir/work/<trial id>
    record_dir: str  # trials' local metric records while MLflow is unreachable
    dataset: dict[str, dict]  # label mode -> the data's identity before SR
    study: dict | None = None  # a study's section: each run tested once, its cell tagged
    system_metrics_interval_s: float | None = None  # None: no system metrics recorded
    cost: dict | None = None  # the space's cost section: measure each trial's cost
    searched: tuple[str, ...] = ()  # every searched key: those a trial did not sample are inactive


def epoch_row(metrics: dict) -> dict:
    return {k: metrics[k] for k in RESULT_KEYS}


def log_history(logger: TrialLogger, rows: list[dict]) -> None:
    """Log the rows MLflow does not have yet (the logger skips steps it has)."""
    for row in rows:
        logger.log_epoch({k: row[k] for k in EPOCH_KEYS}, step=int(row["epoch"]))


def log_pretrained(logger: TrialLogger, report: dict) -> None:
    """What loading model.pretrained did, as tags of the trial's run (MLflow caps a tag's
    value; the key lists are short: position embeddings, the head)."""
    logger.set_tag("nrfer.pretrained.file", report["file"])
    logger.set_tag("nrfer.pretrained.tensors", str(report["tensors"]))
    logger.set_tag("nrfer.pretrained.resampled", ", ".join(report["resampled"]) or "none")
    logger.set_tag("nrfer.pretrained.dropped", ", ".join(report["dropped"]) or "none")


def log_study_results(
    logger: TrialLogger,
    result: FitResult,
    out: Path,
    eval_data: dict | None,
    study: dict,
    test_faces: FERData,
    device: str = "cpu",
) -> Path:
    """A study run's test, once (fit evaluated it with the best-by-val weights), each extra
    evaluation set of the study, and its raw `test_faces` under each of the study's
    degradations (`deg_<kind>_<severity>_<metric>`), as metrics at the chosen epoch; the
    per-image predictions of each go to a folder uploaded as the run's `predictions`
    artifacts."""
    folder = out / "predictions"
    folder.mkdir(exist_ok=True)
    shutil.copy(result.scores.predictions, folder / "test.npz")
    flat = result.to_dict()  # result.json's keys
    metrics = {k: flat[k] for k in STUDY_TEST_KEYS}
    metrics.update({k: flat[k] for k in STUDY_OPTIONAL_KEYS if k in flat})
    if eval_data:
        state = load_checkpoint(result.paths["best"])
        for name, ev in eval_data.items():
            report, probs = evaluate_state(
                state, ev["split"], ev["class_names"], tta=ev["tta"], where=f"eval set {name}"
            )
            for key in ("acc", "mean_class_acc", "macro_f1", "ece", "nll", "vote_tv"):
                if key not in report:
                    continue
                metrics[f"eval_{name}_{key}"] = report[key]
            save_predictions(folder / f"{name}.npz", probs, ev["split"].labels, ev["class_names"])
    if study.get("eval_degradations"):
        metrics.update(degraded_test(result, folder, study, test_faces, device))
    logger.log_epoch(metrics, step=result.best_epoch)
    logger.log_artifacts(folder, "predictions")
    return folder


def degraded_test(
    result: FitResult, folder: Path, study: dict, faces: FERData, device: str
) -> dict:
    """The best weights on the raw test faces under each of the study's degradations (the
    same faces and seed in every run: paired), their predictions saved as deg_<key>.npz."""
    from nrfer.degrade import parse
    from nrfer.evaluate import DEGRADATION_KEYS, Evaluator

    state = load_checkpoint(result.paths["best"])
    evaluator = Evaluator(state, faces.class_names, device=device)
    degradations = parse(study["eval_degradations"], "study.eval_degradations")
    metrics = {}
    test = faces.test
    for d, report, probs in evaluator.degraded(test, degradations, study["degradation_seed"]):
        metrics.update({f"deg_{d.key}_{k}": report[k] for k in DEGRADATION_KEYS})
        save_predictions(folder / f"deg_{d.key}.npz", probs, test.labels, faces.class_names)
    return metrics


def tag_where_it_runs(logger: TrialLogger, cfg) -> None:
    """Where the trial runs (the GPUs Ray gave it, a fraction of one shared, and what CUDA
    sees), the weights its backbone starts from, and its exact config (for reproduce-best)."""
    logger.set_tag("nrfer.gpu_ids", ",".join(str(g) for g in ray.get_gpu_ids()))
    logger.set_tag("nrfer.cuda_visible_devices", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    logger.set_tag("nrfer.device", str(resolve_device(cfg.train.device)))
    if cfg.model.pretrained:  # the file this trial's backbone starts from
        logger.set_tag(
            "nrfer.pretrained", str(resolve_weights(cfg.model.pretrained, cfg.model.backbone))
        )
    logger.log_dict(cfg.to_dict(), "config.yaml")


def trial_cost(
    settings: dict, cfg, faces: FERData, exp_dir: str, gate: DeviceGate | None = None
) -> tuple[dict[str, float], dict]:
    """What this trial's model costs (nrfer.cost) on its own device and faces: `params`,
    `gflops`, `latency_ms_b<B>` (and `latency_ms`, batch 1's). Cost is a property of the
    architecture on a device, so it is measured once per sweep for each (model config,
    input, device): the first trial to measure it writes `<sweep>/costs/<key>.json` and
    trials with the same architecture read it, so two equal models never differ by the
    noise of the moment each was timed. It is timed with the device to itself (`gate`:
    sweep.runtime.cost_gate), the load at that moment recorded: -> (metrics, load)."""
    from nrfer.cost import config_cost

    channels, height, width = (int(d) for d in faces.train.images.shape[1:])
    device = resolve_device(cfg.train.device)
    model = {k: v for k, v in cfg.model.model_dump().items() if k != "pretrained"}
    what = [model, [channels, height, width], faces.num_classes, str(device), settings]
    key = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(exp_dir) / COSTS_DIR / f"{key}.json"
    if path.is_file():
        recorded, problem = read_cost(path)
        if recorded is not None:
            return recorded, recorded_load(path)
        log.warning("%s: %s; measuring this architecture's cost again", path, problem)
        path.unlink(missing_ok=True)
    with gate.alone() if gate is not None else nullcontext(0.0) as waited, Load() as load:
        cost = config_cost(
            cfg.model,
            faces.num_classes,
            (channels, height, width),
            device,
            tuple(settings["batch_sizes"]),
            settings["repeats"],
            settings["warmup"],
        ).to_metrics()
    where = {**load.to_dict(waited), "alone_on_device": gate is not None, "device": str(device)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"architecture": what, "metrics": cost, "load": where}, default=str))
    try:  # the first measurement of an architecture wins; a later one reads it
        os.link(tmp, path)
    except FileExistsError:
        cost, where = read_cost(path)[0] or cost, recorded_load(path) or where
    finally:
        tmp.unlink(missing_ok=True)
    return cost, where


def recorded_load(path: Path) -> dict:
    """The load a recorded cost was measured under ({} for a record without one)."""
    try:
        load = json.loads(path.read_text()).get("load")
    except (OSError, ValueError, AttributeError):
        return {}
    return load if isinstance(load, dict) else {}


def read_cost(path: Path) -> tuple[dict[str, float] | None, str]:
    """A recorded cost (`costs/<key>.json` or a checkpoint's cost.json) -> (its metrics, "")
    when every value is a finite number >= 0 under a cost name (params, gflops,
    latency_ms, latency_ms_b<B>), else (None, what is wrong): a damaged or edited file is
    measured again, never trusted."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"unreadable ({e})"
    metrics = raw.get("metrics", raw) if isinstance(raw, dict) else raw
    if not isinstance(metrics, dict) or not metrics:
        return None, "no cost metrics in it"
    for name, value in metrics.items():
        if not re.fullmatch(r"params|gflops|latency_ms(_b\d+)?", str(name)):
            return None, f"unknown cost {name!r}"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value >= 0)
        ):
            return None, f"{name}: {value!r} is not a finite number >= 0"
    return {k: float(v) for k, v in metrics.items()}, ""


def run_trial(
    params: dict[str, Any],
    base: dict,
    data: dict[str, FERData],
    tracking: TrialContext,
    launch_dir: str = ".",
    eval_data: dict | None = None,
) -> None:
    """One trial; `params` holds the sampled values, `base` the shared config (its paths
    already absolute), `data` the data per label mode, `launch_dir` where relative paths
    among the sampled values point; in a study, `eval_data` the extra evaluation sets."""
    context = tune.get_context()
    trial_id = context.get_trial_id()
    if completed_result(tracking.exp_dir, trial_id) is not None:
        return  # it completed before the driver was killed, after Tune's last saved state:
        # the driver gives it its final result back (sweep.runtime.ledger)
    cfg = apply_params(base, {k: absolute_path(k, v, launch_dir) for k, v in params.items()})
    faces = raw_faces = data[cfg.data.label_mode]
    study = tracking.study
    resume = None
    cost: dict[str, float] = {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # Ray retried this trial, or the sweep resumed: continue
        with checkpoint.as_directory() as d:
            resume = load_checkpoint(Path(d) / RunPaths.LAST)
            if (Path(d) / COST_FILE).is_file():
                recorded, problem = read_cost(Path(d) / COST_FILE)
                if recorded is None:
                    log.warning("%s (checkpoint): %s; measured again", COST_FILE, problem)
                cost = recorded or {}
    for k, v in WORKER_HTTP_ENV.items():
        os.environ.setdefault(k, v)
    logger = TrialLogger(tracking.run, trial_id, Path(tracking.record_dir) / f"{trial_id}.jsonl")
    name = run_name(trial_number(context.get_trial_name()), params, trial_id)
    # a searched key this trial did not sample is inactive (its `when:` is not met): its
    # config default is not a value the trial used, so it is not logged (blank everywhere)
    inactive = set(tracking.searched) - set(params)
    logged = {k: v for k, v in cfg.flat().items() if k not in inactive}
    run_id = logger.start(config=logged, sampled=params, name=name)
    if study:  # the table groups a study's runs by cell
        cell = {k: v for k, v in params.items() if k != SEED_KEY}
        logger.set_tag(CELL_TAG, json.dumps(cell, sort_keys=True))
        logger.set_tag(SEED_TAG, str(cfg.train.seed))
    if cfg.data.sr.method != "none":  # the driver built this cache before any trial started
        faces = apply_sr(faces, cfg.data.sr, show_progress=False)
        logger.set_tag("nrfer.sr_build_id", faces.meta["sr"]["build_id"])
    logger.log_input(identity(faces, base=tracking.dataset[cfg.data.label_mode]))
    if interval := tracking.system_metrics_interval_s:  # the space's tracking section
        # a run that existed continues its system/* steps, with or without a checkpoint (a
        # trial killed before its first one restarts from epoch 0 but not from step 0)
        start_monitor(run_id, tracking.run.uri, interval, resumed=logger.reused)
    train_device = resolve_device(cfg.train.device)
    peak = PeakMemory(train_device)
    history: list[dict] = []
    if resume is not None:  # visible in the UI: this attempt continued after a lost worker
        history = [epoch_row(m) for m in resume.get("history", [])]
        log_history(logger, history)  # epochs checkpointed but not logged before the kill
        logger.set_tag("nrfer.resumed_after_epoch", str(resume["epoch"]))
    tag_where_it_runs(logger, cfg)
    # with a cost section, trials on one device take turns with cost measurements: a trial
    # holds the device (shared) while it trains an epoch, a measurement holds it alone
    gate = (
        DeviceGate(tracking.run.instance, str(resolve_device(cfg.train.device)))
        if tracking.cost is not None
        else None
    )
    if tracking.cost is not None and not cost:  # before training: known at every rung
        cost, load = trial_cost(tracking.cost, cfg, faces, tracking.exp_dir, gate)
        if load:
            logger.set_tag("nrfer.cost_load", json.dumps(load, sort_keys=True))
    if cost:  # constant over the epochs: logged at step 0, reported with every epoch
        logger.log_epoch(cost, step=0)

    def report(metrics: dict, paths: RunPaths) -> None:
        if gate is not None:  # the epoch is over: a waiting measurement may go now
            gate.release()
        if not history and paths.pretrained.is_file():  # once per attempt, before epoch 1
            log_pretrained(logger, json.loads(paths.pretrained.read_text()))
        history.append(epoch_row(metrics))
        if metrics["improved"]:
            logger.log_artifacts(paths.previews, "previews")
        extra = {**peak.read(), **{k: metrics[k] for k in TIMING_KEYS}}
        logger.log_epoch(extra, step=int(metrics["epoch"]))  # not in Tune's results
        checkpoint = None
        if metrics["checkpointed"]:  # last.pt moved (not copied) into the folder Tune copies
            staged = paths.out / TUNE_DIR
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir()
            os.replace(paths.last, staged / RunPaths.LAST)
            (staged / HISTORY_FILE).write_text(json.dumps(history))
            if cost:
                (staged / COST_FILE).write_text(json.dumps(cost))
            checkpoint = tune.Checkpoint.from_directory(str(staged))
        else:  # no checkpoint: a resume runs this epoch again anyway (logged once)
            log_history(logger, history[-1:])
        # Returns once Tune has the checkpoint and wants more; never when it stops the trial.
        on_gpu = {ON_GPU_KEY: float(train_device.type == "cuda")}  # the driver says it once if not
        tune.report({**epoch_row(metrics), **cost, **on_gpu}, checkpoint=checkpoint)
        if gate is not None:  # Tune wants another epoch (it never returns when it stops one)
            gate.hold()
        if checkpoint is not None:  # Tune has its copy
            shutil.rmtree(paths.out / TUNE_DIR, ignore_errors=True)
            log_history(logger, history[-1:])

    out = work_dir(tracking.exp_dir, trial_id)
    out.mkdir(parents=True, exist_ok=True)
    # the driver removes `out` when the trial ends, whatever ends it
    if gate is not None:
        gate.hold()  # the first epoch
    try:
        # a search compares configs on validation only; a study tests each run once
        result = fit(
            cfg,
            data=faces,
            callback=report,
            resume=resume,
            out_dir=out,
            evaluate_test=bool(study),
        )
    except FloatingPointError:  # diverged: a bad config, not a crash; retrying cannot help
        logger.fail(traceback.format_exc(), diverged=True)
        tune.report({**WORST, **cost})  # the searcher and ASHA see it as the worst result
        return
    finally:
        stop_monitor()  # a trial stopped by the scheduler ends here or in the next trial
        if gate is not None:
            gate.close()
    if study:
        log_study_results(logger, result, out, eval_data, study, raw_faces, str(train_device))
    # best.pt goes to MLflow from the driver, for the top K trials (sweep.runtime.retention)
    logger.finish()
