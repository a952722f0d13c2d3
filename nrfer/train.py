"""Train one FER model: epochs of train + validation, best-by-val checkpoint, test once.

    python -m nrfer.train --config nrfer/configs/demo.yaml --out runs/demo
    python -m nrfer.train --config nrfer/configs/demo.yaml --set model.resizer.enabled=false
    python -m nrfer.train --config nrfer/configs/demo.yaml --resume runs/demo/checkpoint/last.pt

The last line printed is one JSON object with best_val_acc, best_epoch and test_acc. The
loop reports through a plain callback, `callback(metrics, paths) -> stop?` (`RunPaths`: where
it wrote the checkpoints and previews); the
sweep passes one that reports to Ray Tune and MLflow, the CLI one that prints.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch

from nrfer.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_into,
    require,
    save_checkpoint,
)
from nrfer.cli import check_out_dir, run_command
from nrfer.config import (
    ConfigError,
    TrialConfig,
    config_diff,
    fingerprint,
    load_config,
    save_config,
)
from nrfer.data import DataFormatError, FERData, load_data, prior_from_votes
from nrfer.data.labels import ferplus_prior
from nrfer.device import resolve_device
from nrfer.engine import DeviceSplit, evaluate, train_one_epoch
from nrfer.evaluate import predict_batches, save_predictions, scores, split_votes
from nrfer.losses import LOSSES, uses_prior
from nrfer.models import build_model
from nrfer.optim import build_lr_schedule, build_optimizer
from nrfer.parsers import train_parser
from nrfer.viz import confusion_image, resizer_grid


@dataclass(frozen=True)
class RunPaths:
    """Where `fit` writes, in one place: passed to its callback each epoch, and in its result."""

    out: Path
    BEST: ClassVar[str] = "best.pt"  # best-by-val weights, self-contained (nrfer.predict)
    LAST: ClassVar[str] = "last.pt"  # everything needed to resume

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    @property
    def best(self) -> Path:
        return self.checkpoint_dir / self.BEST

    @property
    def last(self) -> Path:
        return self.checkpoint_dir / self.LAST

    @property
    def previews(self) -> Path:
        return self.out / "previews"

    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def result(self) -> Path:
        return self.out / "result.json"

    @property
    def pretrained(self) -> Path:  # what loading model.pretrained did (when it is set)
        return self.out / "pretrained.json"

    @property
    def test_predictions(self) -> Path:  # per-image test probabilities (nrfer.evaluate)
        return self.out / "test_predictions.npz"

    def to_dict(self) -> dict[str, str]:
        names = ("checkpoint_dir", "best", "last", "previews", "config", "result")
        return {name: str(getattr(self, name)) for name in names}


Callback = Callable[[dict, RunPaths], "bool | None"]
# Settings that say where a run executes, not what it computes: a resume may change them.
RESUME_MAY_CHANGE = ("train.device", "train.num_threads", "train.compile", "train.checkpoint_every")


def build_loss(cfg: TrialConfig, data: FERData) -> torch.nn.Module:
    prior = None
    if uses_prior(cfg.loss.name):
        if cfg.loss.prior == "ferplus":
            prior = torch.from_numpy(ferplus_prior(tuple(data.class_names)))
        elif cfg.loss.prior is not None:
            prior = torch.tensor(cfg.loss.prior, dtype=torch.float32)
            if prior.shape != (data.num_classes, data.num_classes):
                k = data.num_classes
                raise ConfigError(
                    f"loss.prior: {prior.shape[0]}x{prior.shape[1]}, but the data have {k} "
                    f"classes ({', '.join(data.class_names)}): give {k} rows of {k} values"
                )
        elif data.train.votes is not None:
            prior = torch.from_numpy(
                prior_from_votes(data.train.votes, data.train.labels, data.num_classes)
            )
        elif data.meta.get("prior") is not None:  # no votes: the FER+ prior mapped to its classes
            prior = torch.as_tensor(data.meta["prior"], dtype=torch.float32)
    return LOSSES.create(
        cfg.loss.name,
        num_classes=data.num_classes,
        alpha=cfg.loss.alpha,
        gamma=cfg.loss.gamma,
        smoothing=cfg.loss.smoothing,
        prior=prior,
    )


def maybe_compile(model: torch.nn.Module, enabled: bool, sample: torch.Tensor) -> torch.nn.Module:
    """torch.compile behind a flag, tried on one batch; any failure falls back to eager."""
    if not enabled:
        return model
    try:
        compiled = cast(torch.nn.Module, torch.compile(model))
        with torch.no_grad():
            compiled.eval()(sample)
        return compiled
    except Exception as e:  # no compiler, unsupported op, ...
        warnings.warn(
            f"torch.compile failed, training eagerly: {type(e).__name__}: {e}", stacklevel=2
        )
        return model


def best_state(
    model_state: dict, epoch: int, config: TrialConfig, data: FERData, val_acc: float
) -> dict:
    """The best checkpoint is self-contained for prediction (nrfer.predict): weights, the
    config that builds the model, the class names and the input shape it was trained on;
    its epoch and validation accuracy say which epoch it is (a resume reads them)."""
    return {
        "kind": "model",
        "model": model_state,
        "epoch": epoch,
        "val_acc": float(val_acc),
        "config": config.to_dict(),
        "class_names": list(data.class_names),
        "input_shape": [int(d) for d in data.train.images.shape[1:]],
    }


def pretrained_report(model: torch.nn.Module) -> dict | None:
    """What loading `model.pretrained` did (nrfer.models.pretrained.load_pretrained)."""
    return next(
        (cast(dict, m.nrfer_pretrained) for m in model.modules() if hasattr(m, "nrfer_pretrained")),
        None,
    )


def record_pretrained(model: torch.nn.Module, paths: RunPaths) -> None:
    """Print once and write to paths.pretrained what the pretrained load did: the file, the
    tensors loaded, those resampled to this backbone's shape and the head tensors dropped."""
    report = pretrained_report(model)
    if report is None:
        return
    print(
        f"pretrained: {report['tensors']} tensors from {report['file']}; resampled: "
        f"{', '.join(report['resampled']) or 'none'}; dropped (head): "
        f"{', '.join(report['dropped']) or 'none'}",
        flush=True,
    )
    paths.pretrained.write_text(json.dumps(report))


def set_deterministic(on: bool) -> None:
    """Deterministic kernels or not, set on every fit (a Ray worker may run several trials).
    On: cuDNN deterministic without autotuning, a fixed cuBLAS workspace, and torch's
    deterministic algorithms, warning (not failing) for ops that have none on CUDA (the
    STN's grid_sample and the resizer's bilinear upsampling backward)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on and torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(on, warn_only=True)


def step_schedule_early(scheduler) -> None:
    """The paper's timing: the schedule steps before the epoch's optimiser steps; PyTorch's
    warning about that order is the point here, not a mistake."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        scheduler.step()


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


@dataclass
class Setup:
    """What one training run works with, built once by `setup`."""

    config: TrialConfig
    data: FERData
    device: torch.device
    paths: RunPaths
    splits: dict[str, DeviceSplit]  # train / val / test on the training device
    model: torch.nn.Module
    step_model: torch.nn.Module  # `model` compiled (train.compile), sharing its parameters
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any


@dataclass
class Progress:
    """Where training stands: what a checkpoint keeps and a resume continues from."""

    start_epoch: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class TestScores:
    """The test split, evaluated once with the best-by-validation weights."""

    acc: float
    macro_f1: float
    mean_class_acc: float
    ece: float
    nll: float
    per_class_recall: list[float]
    confusion: list[list[int]]
    predictions: str  # test_predictions.npz: per-image probabilities and labels
    vote_tv: float | None = None  # where the test split has annotator votes


@dataclass(frozen=True)
class FitResult:
    """What `fit` returns; `to_dict()` is result.json."""

    best_val_acc: float
    best_epoch: int
    class_names: list[str]
    epochs_run: int
    history: list[dict]  # one row of metrics per epoch run
    compiled: bool  # train.compile took effect
    out_dir: str
    paths: dict[str, str]  # RunPaths.to_dict(): best, last, config, result, ...
    test: TestScores | None = None  # None: fit(..., evaluate_test=False)

    @property
    def scores(self) -> TestScores:
        """The test scores of a run that was tested (an error for one that was not)."""
        if self.test is None:
            raise ValueError(f"the run in {self.out_dir} was not tested (evaluate_test=False)")
        return self.test

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "test"}
        if self.test is not None:
            s = self.test
            out |= {
                "test_acc": s.acc,
                "test_macro_f1": s.macro_f1,
                "test_mean_class_acc": s.mean_class_acc,
                "test_ece": s.ece,
                "test_nll": s.nll,
                **({"test_vote_tv": s.vote_tv} if s.vote_tv is not None else {}),
                "test_per_class_recall": s.per_class_recall,
                "test_confusion": s.confusion,
                "test_predictions": s.predictions,
            }
        return out


def fit(
    config: TrialConfig,
    data: FERData | None = None,
    callback: Callback | None = None,
    resume: str | Path | dict | None = None,
    out_dir: str | Path | None = None,
    evaluate_test: bool = True,
    force_resume: bool = False,
) -> FitResult:
    """Train `config`; returns the summary (also written to out_dir/result.json).

    resume: a checkpoint file/folder (or its loaded dict) from an earlier run of this config;
    training continues after its epoch and ends where an unbroken run would have.
    evaluate_test: False in sweeps, where configs are compared on validation only.
    force_resume: continue `resume` even when its config differs from `config` (by default
    that is a ConfigError naming every key that changed).
    """
    run = setup(config, data, out_dir)
    progress = Progress() if resume is None else restore(run, resume, force_resume)
    # Epochs: train, validate, checkpoint (best.pt when val improves, last.pt every
    # train.checkpoint_every epochs and at the last), report.
    every, epochs = config.train.checkpoint_every, config.train.epochs
    for epoch in range(progress.start_epoch, epochs):
        metrics = run_epoch(run, progress, epoch)
        metrics["checkpointed"] = (epoch + 1) % every == 0 or epoch == epochs - 1
        if metrics["checkpointed"]:
            save_last(run, progress, epoch)
        if callback is not None and callback(metrics, run.paths):
            break
    return finish(run, progress, evaluate_test)


def setup(config: TrialConfig, data: FERData | None, out_dir: str | Path | None) -> Setup:
    """Threads, seed, device and outputs; then the data (read unless given), the model, the
    loss, the optimiser and its LR schedule."""
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    torch.manual_seed(tc.seed)
    set_deterministic(tc.deterministic)
    device = resolve_device(tc.device)
    paths = RunPaths(Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="nrfer-")))
    paths.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, paths.config)

    data = data if data is not None else load_data(config.data)
    for name in ("train", "val"):
        if len(data.split(name)) == 0:
            raise DataFormatError(f"{data.source}: the {name} split is empty")
    splits = {s: DeviceSplit(data.split(s), device) for s in ("train", "val", "test")}
    model = build_model(config.model, data.num_classes, data.train.image_size).to(device)
    record_pretrained(model, paths)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config, data).to(device)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_lr_schedule(optimizer, config.scheduler, tc.epochs)
    sample = splits["train"].batch(torch.arange(min(2, len(splits["train"])), device=device))
    step_model = maybe_compile(model, tc.compile, sample)  # shares `model`'s parameters
    return Setup(
        config, data, device, paths, splits, model, step_model, loss_fn, optimizer, scheduler
    )


def restore(run: Setup, resume: str | Path | dict, force_resume: bool) -> Progress:
    """Model, optimiser and LR schedule from `resume` (a checkpoint or its loaded dict) of
    this config; its best weights are this run's best.pt (already there, or copied from
    beside the resumed last.pt)."""
    state = resume if isinstance(resume, dict) else load_checkpoint(resume, map_location=run.device)
    where = "--resume checkpoint" if isinstance(resume, dict) else f"--resume {resume}"
    require(state, "resume", where)
    check_resume_config(state, run.config, resume, force_resume)
    load_into(run.model, state["model"], where, "model")
    load_into(run.optimizer, state["optimizer"], where, "optimizer")
    load_into(run.scheduler, state["scheduler"], where, "LR schedule")
    progress = Progress(
        start_epoch=state["epoch"] + 1,
        best_val_acc=state["best_val_acc"],
        best_epoch=state["best_epoch"],
        history=list(state.get("history", [])),
    )
    restore_best(run, progress, state, resume)
    return progress


def restore_best(run: Setup, progress: Progress, state: dict, resume) -> None:
    """The best weights of a resumed run: best.pt in this run's folder (a sweep trial
    continues in its own folder), else the one beside the resumed last.pt, else the copy
    that last.pt files before Dec 2026 held. A best.pt newer than last.pt (a kill between
    the two writes, or a resume from an older checkpoint) stands: it was the best by
    validation when it was written, and the epochs after last.pt run again."""
    if progress.best_epoch < 0:
        return
    here = run.paths.best
    beside = None
    if isinstance(resume, str | Path):
        beside = (Path(resume) if Path(resume).is_dir() else Path(resume).parent) / RunPaths.BEST
    source = here if here.is_file() else beside if beside and beside.is_file() else None
    if source is None and state.get("best_model") is not None:
        acc, epoch = progress.best_val_acc, progress.best_epoch
        save_checkpoint(best_state(state["best_model"], epoch, run.config, run.data, acc), here)
        return
    looked = " or ".join(str(p) for p in (here, beside) if p is not None)
    if source is None:
        raise CheckpointError(
            f"resume: the best weights (epoch {progress.best_epoch}) are not at {looked}; "
            "resume from the folder the run wrote"
        )
    best = load_checkpoint(source, map_location="cpu")
    epoch = int(best.get("epoch", -1))
    newer = epoch > state["epoch"] and best.get("val_acc") is not None
    if epoch != progress.best_epoch and not newer:
        raise ConfigError(
            f"resume: {source} holds epoch {epoch}, but the resumed checkpoint (epoch "
            f"{state['epoch']}) has its best at epoch {progress.best_epoch}: they are not "
            "from the same run"
        )
    if newer:
        progress.best_val_acc, progress.best_epoch = float(best["val_acc"]), epoch
    if source != here:
        save_checkpoint(best, here)


def run_epoch(run: Setup, progress: Progress, epoch: int) -> dict:
    """Train one epoch, validate, and keep the weights (best.pt, previews) when validation
    accuracy improved; returns the epoch's metrics (also appended to the history)."""
    config, t0 = run.config, time.perf_counter()
    seed = epoch_seed(config.train.seed, epoch)
    torch.manual_seed(seed)  # dropout / drop-path draws of this epoch
    if config.scheduler.step_at == "epoch_start":
        step_schedule_early(run.scheduler)
    train_m = train_one_epoch(
        run.step_model,
        run.splits["train"],
        run.loss_fn,
        run.optimizer,
        config,
        seed,
        run.data.label_mode,
    )
    train_s = time.perf_counter() - t0
    lr = run.optimizer.param_groups[0]["lr"]
    if config.scheduler.step_at == "epoch_end":
        run.scheduler.step()
    val = evaluate(run.step_model, run.splits["val"], run.loss_fn, config, run.data.num_classes)
    if not np.isfinite(train_m["train_loss"]):
        raise FloatingPointError(
            f"epoch {epoch}: training loss is {train_m['train_loss']} (diverged)"
        )
    improved = val["acc"] > progress.best_val_acc
    if improved:
        progress.best_val_acc, progress.best_epoch = val["acc"], epoch
        weights = run.model.state_dict()
        save_checkpoint(best_state(weights, epoch, config, run.data, val["acc"]), run.paths.best)
        write_previews(run.paths.previews, run.model, run.data, val["confusion"], run.device)
    metrics = {
        "epoch": epoch,
        **train_m,
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "val_macro_f1": val["macro_f1"],
        "lr": lr,
        "best_val_acc": progress.best_val_acc,
        "best_epoch": progress.best_epoch,
        "improved": improved,
        "epoch_time_s": time.perf_counter() - t0,  # train + validate + best.pt and previews
        "images_per_s": len(run.splits["train"]) / max(train_s, 1e-9),  # training only
    }
    progress.history.append(metrics)
    return metrics


def save_last(run: Setup, progress: Progress, epoch: int) -> None:
    """last.pt: everything a resume after `epoch` needs."""
    save_checkpoint(
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "epoch": epoch,
            "best_val_acc": progress.best_val_acc,
            "best_epoch": progress.best_epoch,
            "history": progress.history,
            "config": run.config.to_dict(),
            "config_sha256": fingerprint(run.config.to_dict()),
        },
        run.paths.last,
    )


def finish(run: Setup, progress: Progress, evaluate_test: bool) -> FitResult:
    """The run's summary (result.json); with `evaluate_test`, the test split evaluated once,
    with the best-by-validation weights."""
    result = FitResult(
        best_val_acc=progress.best_val_acc,
        best_epoch=progress.best_epoch,
        class_names=list(run.data.class_names),
        epochs_run=len(progress.history),
        history=progress.history,
        compiled=run.step_model is not run.model,
        out_dir=str(run.paths.out),
        paths=run.paths.to_dict(),
        test=test_once(run) if evaluate_test else None,
    )
    run.paths.result.write_text(json.dumps(result.to_dict(), indent=1))
    return result


def test_once(run: Setup) -> TestScores:
    """The test split, once, with the best-by-validation weights, through the evaluation
    `python -m nrfer.evaluate` runs (so both give the same numbers); the per-image
    probabilities are kept in test_predictions.npz (studies compare them)."""
    best = load_checkpoint(run.paths.best, map_location=run.device)["model"]
    run.model.load_state_dict(best)
    test, bs = run.splits["test"], run.config.train.eval_batch_size
    batches = (
        test.batch(torch.arange(i, min(i + bs, len(test)), device=run.device))
        for i in range(0, len(test), bs)
    )
    probs = predict_batches(run.model, batches, run.config)
    labels = run.data.test.labels
    names = run.data.class_names
    s = scores(probs, labels, names, split_votes(run.data.test, names))
    save_predictions(run.paths.test_predictions, probs, labels, names)
    return TestScores(
        acc=s["acc"],
        macro_f1=s["macro_f1"],
        mean_class_acc=s["mean_class_acc"],
        ece=s["ece"],
        nll=s["nll"],
        per_class_recall=list(s["per_class_recall"].values()),
        confusion=s["confusion"],
        predictions=str(run.paths.test_predictions),
        vote_tv=s.get("vote_tv"),
    )


def check_resume_config(state: dict, config: TrialConfig, source, force: bool) -> None:
    """A resume continues the run it was saved from: the same config (where it runs aside).
    Another learning rate or dataset would continue with the old optimiser state and the
    best epoch of another experiment, so a changed config is refused unless forced."""
    if state.get("config") is None:  # written before configs were stored: nothing to check
        return
    changed = config_diff(state["config"], config.to_dict(), ignore=RESUME_MAY_CHANGE)
    if not changed:
        return
    where = "the checkpoint" if isinstance(source, dict) else f"checkpoint {source}"
    listing = "; ".join(changed[:20]) + (
        f"; ... {len(changed) - 20} more" if len(changed) > 20 else ""
    )
    if force:
        warnings.warn(f"resuming {where} with a changed config: {listing}", stacklevel=3)
        return
    raise ConfigError(
        f"--resume: {where} was saved with another config ({listing}); resume with the "
        "config it was saved with, start a new run, or pass --force-resume to continue anyway"
    )


def write_previews(
    folder: Path, model, data: FERData, confusion: list, device: torch.device, n: int = 8
) -> None:
    """The best epoch's validation confusion matrix and resizer view, as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    confusion_image(confusion, data.class_names).save(folder / "val_confusion.png")
    resizer_grid(model, data.val.images[:n], device).save(folder / "resizer_grid.png")


def print_epoch(metrics: dict, _paths: RunPaths) -> None:
    print(
        f"epoch {metrics['epoch']:3d}  train_loss {metrics['train_loss']:.4f}  train_acc {metrics['train_acc']:.3f}  "
        f"val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_acc']:.3f}  val_f1 {metrics['val_macro_f1']:.3f}  "
        f"({metrics['epoch_time_s']:.1f}s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    return run_command(train_parser(__doc__), _train, argv)


def _train(args) -> int:
    config = load_config(args.config, args.overrides)
    out = Path(args.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    check_out_dir(out, "--out")
    t0 = time.perf_counter()
    print(f"reading {config.data.dataset} data ...", flush=True)
    data = load_data(config.data)  # SR caches are built (with their own progress line)
    sizes = ", ".join(f"{len(data.split(s))} {s}" for s in ("train", "val", "test"))
    print(
        f"data: {sizes} faces of {data.train.images.shape[1:]} ({time.perf_counter() - t0:.0f} s); "
        f"training {config.model.backbone} for {config.train.epochs} epochs ...",
        flush=True,
    )
    result = fit(
        config,
        data=data,
        callback=print_epoch,
        resume=args.resume,
        out_dir=out,
        force_resume=args.force_resume,
    )
    print(
        f"test (best-by-val epoch {result.best_epoch}): acc {result.scores.acc:.4f}  "
        f"macro-F1 {result.scores.macro_f1:.4f}  outputs in {out}  ({time.perf_counter() - t0:.0f}s)"
    )
    keys = ("best_val_acc", "best_epoch", "test_acc", "test_macro_f1", "epochs_run", "out_dir")
    flat = result.to_dict()
    print(json.dumps({k: flat[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
