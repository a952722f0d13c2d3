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

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from nrfer.checkpoint import load_checkpoint, load_into, require, save_checkpoint
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
from nrfer.losses import LOSSES, uses_prior
from nrfer.models import build_model
from nrfer.optim import build_lr_schedule, build_optimizer
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

    def to_dict(self) -> dict[str, str]:
        names = ("checkpoint_dir", "best", "last", "previews", "config", "result")
        return {name: str(getattr(self, name)) for name in names}


Callback = Callable[[dict, RunPaths], "bool | None"]
# Settings that say where a run executes, not what it computes: a resume may change them.
RESUME_MAY_CHANGE = ("train.device", "train.num_threads", "train.compile")


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
        compiled = torch.compile(model)
        with torch.no_grad():
            compiled.eval()(sample)
        return compiled
    except Exception as e:  # no compiler, unsupported op, ...
        warnings.warn(
            f"torch.compile failed, training eagerly: {type(e).__name__}: {e}", stacklevel=2
        )
        return model


def best_state(model_state: dict, epoch: int, config: TrialConfig, data: FERData) -> dict:
    """The best checkpoint is self-contained for prediction (nrfer.predict): weights, the
    config that builds the model, the class names and the input shape it was trained on."""
    return {
        "kind": "model",
        "model": model_state,
        "epoch": epoch,
        "config": config.to_dict(),
        "class_names": list(data.class_names),
        "input_shape": [int(d) for d in data.train.images.shape[1:]],
    }


def pretrained_report(model: torch.nn.Module) -> dict | None:
    """What loading `model.pretrained` did (nrfer.models.pretrained.load_pretrained)."""
    return next(
        (m.nrfer_pretrained for m in model.modules() if hasattr(m, "nrfer_pretrained")), None
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


def fit(
    config: TrialConfig,
    data: FERData | None = None,
    callback: Callback | None = None,
    resume: str | Path | dict | None = None,
    out_dir: str | Path | None = None,
    evaluate_test: bool = True,
    force_resume: bool = False,
) -> dict:
    """Train `config`; returns the summary (also written to out_dir/result.json).

    resume: a checkpoint file/folder (or its loaded dict) from an earlier run of this config;
    training continues after its epoch and ends where an unbroken run would have.
    evaluate_test: False in sweeps, where configs are compared on validation only.
    force_resume: continue `resume` even when its config differs from `config` (by default
    that is a ConfigError naming every key that changed).
    """
    # Setup: threads, seed, device, outputs.
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    torch.manual_seed(tc.seed)
    set_deterministic(tc.deterministic)
    device = resolve_device(tc.device)
    paths = RunPaths(Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="nrfer-")))
    paths.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, paths.config)

    # Data, model, loss, optimiser.
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

    start_epoch, best_val_acc, best_epoch, history = 0, -1.0, -1, []
    best_model: dict | None = None
    if resume is not None:
        state = resume if isinstance(resume, dict) else load_checkpoint(resume, map_location=device)
        where = "--resume checkpoint" if isinstance(resume, dict) else f"--resume {resume}"
        require(state, "resume", where)
        check_resume_config(state, config, resume, force_resume)
        load_into(model, state["model"], where, "model")
        load_into(optimizer, state["optimizer"], where, "optimizer")
        load_into(scheduler, state["scheduler"], where, "LR schedule")
        start_epoch, best_val_acc, best_epoch = (
            state["epoch"] + 1,
            state["best_val_acc"],
            state["best_epoch"],
        )
        history = list(state.get("history", []))
        best_model = state.get("best_model")
        if state.get("best_model") is not None:
            save_checkpoint(best_state(state["best_model"], best_epoch, config, data), paths.best)

    # Epochs: train, validate, checkpoint (last always, best when val improves), report.
    for epoch in range(start_epoch, tc.epochs):
        t0 = time.perf_counter()
        seed = epoch_seed(tc.seed, epoch)
        torch.manual_seed(seed)  # dropout / drop-path draws of this epoch
        if config.scheduler.step_at == "epoch_start":
            step_schedule_early(scheduler)
        train_m = train_one_epoch(
            step_model, splits["train"], loss_fn, optimizer, config, seed, data.label_mode
        )
        lr = optimizer.param_groups[0]["lr"]
        if config.scheduler.step_at == "epoch_end":
            scheduler.step()
        val = evaluate(step_model, splits["val"], loss_fn, config, data.num_classes)
        if not np.isfinite(train_m["train_loss"]):
            raise FloatingPointError(
                f"epoch {epoch}: training loss is {train_m['train_loss']} (diverged)"
            )
        improved = val["acc"] > best_val_acc
        if improved:
            best_val_acc, best_epoch = val["acc"], epoch
            # kept in memory for last.pt, instead of re-reading best.pt every epoch
            best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            save_checkpoint(best_state(model.state_dict(), epoch, config, data), paths.best)
            write_previews(paths.previews, model, data, val["confusion"], device)
        metrics = {
            "epoch": epoch,
            **train_m,
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "val_macro_f1": val["macro_f1"],
            "lr": lr,
            "best_val_acc": best_val_acc,
            "best_epoch": best_epoch,
            "improved": improved,
            "epoch_time_s": time.perf_counter() - t0,
        }
        history.append(metrics)
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_val_acc": best_val_acc,
                "best_epoch": best_epoch,
                "history": history,
                "best_model": best_model,
                "config": config.to_dict(),
                "config_sha256": fingerprint(config.to_dict()),
            },
            paths.last,
        )
        if callback is not None and callback(metrics, paths):
            break

    result = {
        "best_val_acc": best_val_acc,
        "best_epoch": best_epoch,
        "class_names": list(data.class_names),
        "epochs_run": len(history),
        "history": history,
        "compiled": step_model is not model,  # train.compile took effect (no eager fallback)
        "out_dir": str(paths.out),
        "paths": paths.to_dict(),
    }
    if evaluate_test:  # once, with the best-by-validation weights
        model.load_state_dict(load_checkpoint(paths.best, map_location=device)["model"])
        test = evaluate(model, splits["test"], loss_fn, config, data.num_classes)
        result["test_acc"] = test["acc"]
        result["test_macro_f1"] = test["macro_f1"]
        result["test_per_class_recall"] = test["per_class_recall"]
        result["test_confusion"] = test["confusion"]
    paths.result.write_text(json.dumps(result, indent=1))
    return result


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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="trial config YAML (defaults for every key left out)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set model.resizer.n=32 (repeatable)",
    )
    parser.add_argument("--out", help="output folder (default runs/train-<time>)")
    parser.add_argument("--resume", help="checkpoint file or folder to continue from")
    parser.add_argument(
        "--force-resume",
        action="store_true",
        help="continue --resume even if the config differs from the checkpoint's",
    )
    return run_command(parser, _train, argv)


def _train(args) -> int:
    config = load_config(args.config, args.overrides)
    out = Path(args.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    check_out_dir(out, "--out")
    t0 = time.perf_counter()
    result = fit(
        config,
        callback=print_epoch,
        resume=args.resume,
        out_dir=out,
        force_resume=args.force_resume,
    )
    print(
        f"test (best-by-val epoch {result['best_epoch']}): acc {result['test_acc']:.4f}  "
        f"macro-F1 {result['test_macro_f1']:.4f}  outputs in {out}  ({time.perf_counter() - t0:.0f}s)"
    )
    keys = ("best_val_acc", "best_epoch", "test_acc", "test_macro_f1", "epochs_run", "out_dir")
    print(json.dumps({k: result[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
