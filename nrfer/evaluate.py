"""Evaluate a trained model on a split of a dataset: the one evaluation of training's test,
studies, reproduce-best and this command.

    python -m nrfer.evaluate --model runs/demo/checkpoint/best.pt            # its own test split
    python -m nrfer.evaluate --model best.pt --dataset rafdb --root data/RAF-DB --tta flip --json

Prints accuracy, mean class accuracy (the mean of per-class recall), macro-F1, per-class
recall and calibration (ECE over 15 confidence bins, NLL, and on data with annotator votes
the mean total-variation distance to the vote distribution), and writes to --out:
metrics.json, confusion.csv + confusion.png (counts), reliability.png (the reliability
diagram), and the per-image predictions (predictions.csv and predictions.npz).
--degrade evaluates the same faces degraded too (nrfer.degrade: lowres, blur, jpeg, noise,
occlude, each at the severities given, deterministic by --degrade-seed) and adds a table
of accuracy, mean class accuracy and calibration per degradation relative to clean
(degradations.csv, degradations.png and predictions_<kind>_<severity>.npz in --out):

    python -m nrfer.evaluate --model best.pt --degrade lowres:12,16,24 blur:1,2 jpeg:20,50 \\
        noise:0.05 occlude:0.25 --out eval/
Without --dataset the model is evaluated on the data it was trained on (its config's data
section). Another dataset's classes are matched to the model's by name: a model class the
dataset lacks (FER+'s contempt in RAF-DB) has its logit dropped, and said so; a dataset
class the model never learned is an error naming it. --tta flip averages the probabilities
of each face and its mirror. A model in MLflow (models:/NAME@champion) is
`nrfer evaluate` (sweep.commands.evaluate), the same command with MLflow at the sweep layer.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from nrfer.engine import autocast
from nrfer.metrics import calibration, confusion_update, reliability_bins, summarize
from nrfer.parsers import TTA

# other spellings of our class names in released label files and model cards
ALIASES = {
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
    "contemptuous": "contempt",
}


def canonical(name: str) -> str:
    key = str(name).strip().lower()
    return ALIASES.get(key, key)


@dataclass(frozen=True)
class ClassMap:
    """Which model output answers each dataset class (`columns[i]`: the model's column for
    dataset class i) and the model classes the dataset lacks (their logits are dropped)."""

    columns: tuple[int, ...]
    dropped: tuple[str, ...]

    @property
    def identity(self) -> bool:
        return not self.dropped and self.columns == tuple(range(len(self.columns)))


def map_classes(model_names, data_names, where: str = "the dataset") -> ClassMap:
    """Dataset classes matched to the model's by name (see ALIASES)."""
    index = {canonical(n): i for i, n in enumerate(model_names)}
    missing = [n for n in data_names if canonical(n) not in index]
    if missing:
        raise ValueError(
            f"{where} has class {missing[0]!r}, which the model never learned (the model's "
            f"classes: {', '.join(model_names)}); evaluate on a dataset of those classes"
        )
    columns = tuple(index[canonical(n)] for n in data_names)
    dropped = tuple(n for i, n in enumerate(model_names) if i not in columns)
    return ClassMap(columns, dropped)


@torch.inference_mode()
def predict_batches(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    cfg,
    tta: str = "none",
    columns: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Class probabilities [N, K] of float [0, 1] image batches, as training evaluates
    (eval mode, its channels_last and autocast): a softmax over the kept `columns` of the
    logits (all when None); with tta 'flip', the mean of the face's and its mirror's."""
    if tta not in TTA:
        raise ValueError(f"--tta {tta!r}: expected one of {', '.join(TTA)}")
    was_training = model.training
    model.eval()
    cols = None if columns is None else list(columns)
    out = []
    for x in batches:
        views = [x, x.flip(-1)] if tta == "flip" else [x]
        probs: torch.Tensor | None = None
        for v in views:
            if cfg.train.channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            with autocast(v.device, cfg.train.amp):
                logits = model(v).float()
            if cols is not None:
                logits = logits[:, cols]
            p = torch.softmax(logits, 1)
            probs = p if probs is None else probs + p
        assert probs is not None  # at least one view
        out.append((probs / len(views)).cpu().numpy())
    model.train(was_training)
    k = len(cols) if cols is not None else None
    return np.concatenate(out) if out else np.zeros((0, k or 0), np.float32)


def scores(probs: np.ndarray, labels: np.ndarray, class_names, votes=None) -> dict:
    """Accuracy, mean class accuracy, macro-F1, per-class recall (by name) and the confusion
    matrix (rows: true class) of the predictions argmax(probs); their calibration (ECE, NLL)
    and, with the split's annotator `votes` (see `split_votes`), the mean total-variation
    distance of the predicted distribution to the votes (`vote_tv`)."""
    k = len(class_names)
    conf = torch.zeros(k, k, dtype=torch.long)
    if len(labels):
        confusion_update(conf, torch.from_numpy(probs.argmax(1)), torch.from_numpy(labels))
    s = summarize(conf)
    return {
        "acc": s["acc"],
        "mean_class_acc": s["mean_class_acc"],
        "macro_f1": s["macro_f1"],
        "per_class_recall": dict(zip(class_names, s["per_class_recall"], strict=True)),
        "confusion": s["confusion"],
        "n": s["n"],
        **calibration(probs, labels, votes),
    }


def split_votes(split, class_names) -> np.ndarray | None:
    """The split's annotator votes when they count the dataset's classes (FER+ and the
    synthetic set: the first 8 vote columns are its 8 classes, in order), else None."""
    from nrfer.data.types import EMOTIONS

    votes = getattr(split, "votes", None)
    if votes is None or tuple(class_names) != EMOTIONS:
        return None
    return votes


def save_predictions(path: Path, probs: np.ndarray, labels: np.ndarray, class_names) -> Path:
    """The per-image predictions as a small .npz (float16 probabilities: 16 bytes per FER+
    face): what significance tests compare without retraining."""
    from nrfer.files import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        np.savez_compressed(
            f,
            probs=probs.astype(np.float16),
            labels=labels.astype(np.int16),
            class_names=np.array(list(class_names)),
        )
    return path


def load_predictions(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {
            "probs": z["probs"].astype(np.float32),
            "labels": z["labels"].astype(np.int64),
            "class_names": [str(n) for n in z["class_names"]],
        }


# --- the command ------------------------------------------------------------------------


def data_config(state: dict, args) -> tuple:
    """The data to evaluate on: the model's own (its config's data section) unless --dataset
    names another; --set keys of the data section on top. Returns (DataConfig, label)."""
    from nrfer.config import make_config, parse_overrides

    trained = state["config"]["data"]
    own = args.dataset is None or (
        args.dataset == trained.get("dataset") and args.root in (None, trained.get("root"))
    )
    raw = {k: v for k, v in trained.items() if k != "sr"} if own else {"dataset": args.dataset}
    if args.root:
        raw["root"] = args.root
    overrides = parse_overrides(args.overrides)  # data keys, with or without "data."
    raw = {
        **raw,
        **{k: v for k, v in overrides.items() if k != "data"},
        **overrides.get("data", {}),
    }
    cfg = make_config({"data": raw}, "--dataset/--set").data
    return cfg, ("the dataset it was trained on" if own else f"--dataset {cfg.dataset}")


class Evaluator:
    """A model checkpoint's state (best.pt) ready to score splits of raw faces whose classes
    are `class_names` (matched to the model's by name): the model is built once."""

    def __init__(
        self,
        state: dict,
        class_names,
        *,
        tta: str = "none",
        device: str = "cpu",
        source: str = "checkpoint",
        where: str = "the dataset",
    ) -> None:
        from nrfer.predict import Predictor

        self.predictor = Predictor(state, device, source=source)
        self.class_names = list(class_names)
        self.cmap = map_classes(self.predictor.class_names, class_names, where)
        self.tta = tta
        if self.predictor.config.train.channels_last:
            self.predictor.model.to(memory_format=torch.channels_last)

    def __call__(self, split) -> tuple[dict, np.ndarray]:
        """Scores of `split` (a FERSplit of raw faces) and its per-image probabilities in
        the dataset's classes."""
        predictor, config = self.predictor, self.predictor.config
        bs = config.train.eval_batch_size
        batches = (
            predictor.preprocess(list(split.images[i : i + bs])) for i in range(0, len(split), bs)
        )
        columns = None if self.cmap.identity else self.cmap.columns
        probs = predict_batches(predictor.model, batches, config, self.tta, columns)
        names = self.class_names
        report = {
            "tta": self.tta,
            "class_names": names,
            "dropped_model_classes": list(self.cmap.dropped),
            **scores(probs, split.labels, names, split_votes(split, names)),
        }
        return report, probs

    def degraded(self, split, degradations, seed: int = 0):
        """(degradation, report, probs) of `split` under each degradation (nrfer.degrade)."""
        for d in degradations:
            faces = replace(split, images=d.apply(split.images, seed))
            report, probs = self(faces)
            yield d, report, probs


def evaluate_state(
    state: dict,
    split,
    class_names,
    *,
    tta: str = "none",
    device: str = "cpu",
    source: str = "checkpoint",
    where: str = "the dataset",
) -> tuple[dict, np.ndarray]:
    """A model checkpoint's state (best.pt) on `split` (a FERSplit of raw faces, classes
    `class_names`): its scores and the per-image probabilities in the dataset's classes."""
    return Evaluator(state, class_names, tta=tta, device=device, source=source, where=where)(split)


DEGRADATION_KEYS = ("acc", "mean_class_acc", "macro_f1", "ece", "nll")


def degradation_rows(clean: dict, results) -> list[dict]:
    """One row per (degradation, report, probs): its scores and accuracy relative to clean."""
    rows = []
    for d, report, _ in results:
        row: dict = {"degradation": d.label, "kind": d.kind, "severity": d.severity}
        row.update({k: report[k] for k in DEGRADATION_KEYS})
        row["delta_acc"] = report["acc"] - clean["acc"]
        row["relative_acc"] = report["acc"] / clean["acc"] if clean["acc"] else float("nan")
        rows.append(row)
    return rows


def evaluate_model(args, model_path: Path) -> dict:
    """Evaluate the model file `model_path` as `args` says; returns the report."""
    from nrfer.checkpoint import load_checkpoint
    from nrfer.data import load_data
    from nrfer.degrade import parse
    from nrfer.predict import model_file

    degradations = parse(getattr(args, "degrade", None) or [])  # bad input before any work
    model_path = model_file(model_path)
    state = load_checkpoint(model_path)
    cfg, label = data_config(state, args)
    data = load_data(cfg, sr=False)  # raw faces: the predictor applies the model's SR
    split = data.split(args.split)
    if len(split) == 0:
        raise ValueError(f"{data.source}: the {args.split} split is empty")
    evaluator = Evaluator(
        state,
        data.class_names,
        tta=args.tta,
        device=args.device,
        source=str(model_path),
        where=f"dataset {cfg.dataset}",
    )
    leaked = _leaked(args, split)  # a wrong audit file: before the model runs
    scored, probs = evaluator(split)
    report = {
        "model": getattr(args, "model", None) or str(model_path),  # as named: models:/...
        "model_file": str(model_path),
        "dataset": cfg.dataset,
        "data": data.source,
        "evaluated_on": label,
        "split": args.split,
        **scored,
    }
    if leaked is not None:
        report["without_leaked"] = without_leaked(
            args.exclude, split, probs, leaked, data.class_names
        )
    degraded = []
    if degradations:
        seed = args.degrade_seed
        degraded = list(evaluator.degraded(split, degradations, seed))
        report["degradation_seed"] = seed
        report["face_size"] = split.image_size[0]
        report["degradations"] = degradation_rows(scored, degraded)
    if args.out:
        report["outputs"] = write_outputs(Path(args.out), report, probs, split.labels, degraded)
    else:
        report["reliability_bins"] = reliability_bins(probs, split.labels)
    return report


def _leaked(args, split) -> np.ndarray | None:
    exclude = getattr(args, "exclude", None)
    if not exclude:
        return None
    from nrfer.data.audit import leaked_in

    return leaked_in(exclude, args.split, split.images)


def without_leaked(path, split, probs: np.ndarray, leaked: np.ndarray, class_names) -> dict:
    """The scores of `split` less the faces `leaked` (indices): each metric of the full
    split, on the faces that have no twin in an earlier split."""
    from nrfer.data.audit import kept

    keep = kept(len(split), leaked)
    votes = split_votes(split, class_names)
    left = scores(
        probs[keep], split.labels[keep], class_names, None if votes is None else votes[keep]
    )
    return {"exclude": str(path), "dropped": int((~keep).sum()), **left}


def write_outputs(
    out: Path, report: dict, probs: np.ndarray, labels: np.ndarray, degraded=()
) -> dict:
    """Every output of --out, all or none: written into a staging folder inside `out` and
    moved in once all are whole (a full disk or an error leaves `out` as it was)."""
    import shutil
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".nrfer-evaluate-", dir=out))
    try:
        paths = _write_outputs(stage, out, report, probs, labels, degraded)
        for name in os.listdir(stage):
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return paths


def _write_outputs(
    out: Path, final: Path, report: dict, probs: np.ndarray, labels: np.ndarray, degraded=()
) -> dict:
    """The files into `out` (the staging folder), naming them as they will be in `final`."""
    from nrfer.files import atomic_file, save_image, write_atomic
    from nrfer.viz import confusion_image, degradation_image, reliability_image

    names = report["class_names"]
    files = {
        "metrics": out / "metrics.json",
        "confusion_csv": out / "confusion.csv",
        "confusion_png": out / "confusion.png",
        "reliability_png": out / "reliability.png",
        "predictions_csv": out / "predictions.csv",
        "predictions_npz": out / "predictions.npz",
    }
    with atomic_file(files["confusion_csv"]) as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *names])
        for name, row in zip(names, report["confusion"], strict=True):
            w.writerow([name, *row])
    save_image(confusion_image(report["confusion"], names), files["confusion_png"])
    report["reliability_bins"] = bins = reliability_bins(probs, labels)
    title = f"{report['dataset']} {report['split']}"
    save_image(reliability_image(bins, report["ece"], title), files["reliability_png"])
    with atomic_file(files["predictions_csv"]) as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "predicted", *(f"p_{n}" for n in names)])
        for i, (p, y) in enumerate(zip(probs, labels, strict=True)):
            w.writerow([i, names[y], names[int(p.argmax())], *(f"{v:.5f}" for v in p)])
    save_predictions(files["predictions_npz"], probs, labels, names)
    if degraded:
        files["degradations_csv"] = out / "degradations.csv"
        files["degradations_png"] = out / "degradations.png"
        rows = report["degradations"]
        with atomic_file(files["degradations_csv"]) as f:
            table = csv.DictWriter(f, fieldnames=list(rows[0]))
            table.writeheader()
            table.writerows(rows)
        title = f"{report['model']} on {report['dataset']} {report['split']}"
        clean = {k: report[k] for k in DEGRADATION_KEYS}
        face = report["face_size"]
        plot = degradation_image({"model": rows}, {"model": clean}, title, face)
        save_image(plot, files["degradations_png"])
        for d, _, p in degraded:
            save_predictions(out / f"predictions_{d.key}.npz", p, labels, names)
    paths = {k: str(final / v.name) for k, v in files.items()}
    write_atomic(files["metrics"], json.dumps({**report, "outputs": paths}, indent=1))
    return paths


def print_report(report: dict) -> None:
    print(
        f"{report['model']} on the {report['split']} split of {report['dataset']} "
        f"({report['evaluated_on']}; {report['n']} faces, tta {report['tta']}): "
        f"acc {report['acc']:.4f}  mean class acc {report['mean_class_acc']:.4f}  "
        f"macro-F1 {report['macro_f1']:.4f}"
    )
    calib = f"  calibration: ECE {report['ece']:.4f} (15 bins)  NLL {report['nll']:.4f}"
    if "vote_tv" in report:
        calib += f"  TV to the annotators' votes {report['vote_tv']:.4f}"
    print(calib)
    for name in report["dropped_model_classes"]:
        print(f"  model class {name} has no {report['dataset']} class: its logit is dropped")
    if "without_leaked" in report:
        w = report["without_leaked"]
        print(
            f"  without the {w['dropped']} faces with a twin in an earlier split ({w['n']} "
            f"left; {w['exclude']}): acc {w['acc']:.4f}  mean class acc {w['mean_class_acc']:.4f}"
            f"  macro-F1 {w['macro_f1']:.4f}  ECE {w['ece']:.4f}  NLL {w['nll']:.4f}"
        )
    recall = "  ".join(f"{n} {r:.3f}" for n, r in report["per_class_recall"].items())
    print(f"  per-class recall: {recall}")
    if report.get("degradations"):
        print(degradation_table(report))
    if "outputs" in report:
        print(f"  outputs in {Path(report['outputs']['metrics']).parent}")


def degradation_table(report: dict) -> str:
    """The degradations as a Markdown table: accuracy (and its change from clean), mean class
    accuracy, ECE and NLL per degradation and severity, clean first."""
    lines = [
        f"\n  degradations of the {report['split']} faces (seed {report['degradation_seed']}):",
        "  | degradation | acc % | Δ acc vs clean | relative | mean class acc % | ECE % | NLL |",
        "  |---|---:|---:|---:|---:|---:|---:|",
        f"  | clean | {100 * report['acc']:.2f} | | | {100 * report['mean_class_acc']:.2f} "
        f"| {100 * report['ece']:.2f} | {report['nll']:.3f} |",
    ]
    for r in report["degradations"]:
        lines.append(
            f"  | {r['degradation']} | {100 * r['acc']:.2f} | {100 * r['delta_acc']:+.2f} "
            f"| {r['relative_acc']:.3f} | {100 * r['mean_class_acc']:.2f} "
            f"| {100 * r['ece']:.2f} | {r['nll']:.3f} |"
        )
    return "\n".join(lines)


def run(args, resolve) -> int:
    from nrfer.cli import one_line

    try:
        path = resolve(args.model)
    except (ValueError, OSError) as e:
        raise ValueError(f"--model {args.model}: {one_line(e)}") from None
    report = evaluate_model(args, path)
    if args.json:
        print(json.dumps({k: v for k, v in report.items()}))
    else:
        print_report(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from nrfer.parsers import evaluate_parser
    from nrfer.predict import local_model

    return run_command(
        evaluate_parser(__doc__),
        lambda args: run(args, lambda m: local_model(m, "sweep.commands.evaluate")),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
