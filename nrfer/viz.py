"""Pictures of a model's state: a confusion matrix and a reliability diagram (matplotlib) and
the resizer's view.

Written next to the checkpoints whenever validation improves, so trackers can upload them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def confusion_image(
    conf: list[list[int]] | np.ndarray, class_names: list[str] | tuple[str, ...], cell: int = 44
) -> Image.Image:
    """The confusion matrix as a heat map (matplotlib): rows the true class, columns the
    predicted one, full class names; each cell shows its count, coloured by the row's share
    (the class's recall on the diagonal)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    conf = np.asarray(conf, dtype=np.float64)
    k = len(conf)
    rows = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    side = max(4.0, 0.62 * k + 2.2)
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=list(class_names), rotation=40, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(conf[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rows[i, j] > 0.55 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (row)")
    ax.set_title(f"confusion matrix: counts; {int(conf.sum())} faces", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def reliability_image(bins: list[dict], ece: float, title: str = "") -> Image.Image:
    """A reliability diagram: per confidence bin, accuracy (bars) against the diagonal a
    calibrated model would follow, the gap shaded, each bar's face count above it."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5.0), dpi=100)
    ax = fig.add_subplot()
    width = bins[0]["high"] - bins[0]["low"]
    shown = [b for b in bins if b["n"]]
    for i, b in enumerate(shown):
        ax.bar(
            b["low"],
            b["accuracy"],
            width=width,
            align="edge",
            color="#4878cf",
            ec="white",
            label="accuracy" if i == 0 else None,
        )
        lo, hi = sorted((b["accuracy"], b["confidence"]))
        ax.bar(
            b["low"],
            hi - lo,
            bottom=lo,
            width=width,
            align="edge",
            fill=False,
            ec="#d65f5f",
            hatch="//",
            lw=0.8,
            label="gap to mean confidence" if i == 0 else None,
        )
        ax.text(b["low"] + width / 2, b["accuracy"] + 0.01, str(b["n"]), ha="center", fontsize=6)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"{title + ': ' if title else ''}ECE {100 * ece:.2f}% ({len(bins)} bins)", fontsize=10
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def degradation_image(
    rows: dict[str, list[dict]], clean: dict[str, dict], title: str = "", face_size: int = 48
) -> Image.Image:
    """Accuracy under each kind of degradation (nrfer.degrade), a panel per kind with the
    harsher severities to the right, a line per model (`rows[name]`: its degradation rows)
    starting from its clean accuracy (drawn at the severity that changes nothing: lowres at
    `face_size`, quality 100, no blur, noise or occlusion); a study draws a line per cell."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from nrfer.degrade import KINDS

    kinds = list(dict.fromkeys(r["kind"] for model_rows in rows.values() for r in model_rows))
    legend_rows = (len(rows) + 1) // 2 if len(rows) > 1 else 0
    fig = Figure(figsize=(3.3 * max(1, len(kinds)) + 0.6, 3.4 + 0.22 * legend_rows), dpi=100)
    axes = fig.subplots(1, max(1, len(kinds)), squeeze=False)[0]
    colours = matplotlib.colormaps["tab10"]
    for ax, kind in zip(axes, kinds, strict=False):
        at_clean = face_size if kind == "lowres" else KINDS[kind].clean
        for i, (name, model_rows) in enumerate(rows.items()):
            mine = sorted((r["severity"], r["acc"]) for r in model_rows if r["kind"] == kind)
            points = sorted([(at_clean, clean[name]["acc"]), *mine])
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, [100 * y for y in ys], "o-", color=colours(i % 10), label=name, ms=4)
        if KINDS[kind].worse == "lower":
            ax.invert_xaxis()
        ax.set_xlabel(f"{kind} ({KINDS[kind].unit})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy %")
    fig.suptitle(title or "accuracy under degradation", fontsize=10)
    if legend_rows:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.06 * legend_rows / (1 + 0.065 * legend_rows) + 0.02, 1, 1))
    else:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] float -> [H, W, 3] uint8, stretched per image to the full range."""
    x = x.float()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-6)
    return (x.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)


@torch.inference_mode()
def resizer_grid(
    model: torch.nn.Module, images: np.ndarray, device: torch.device | str = "cpu"
) -> Image.Image:
    """Each row: the input face (nearest-upscaled to the target size) | what the backbone sees."""
    was_training = model.training
    model.eval()
    x = torch.from_numpy(images).to(device).float() / 255
    seen = model.resize(x)  # type: ignore[operator]  # a FERModel (nrfer.models)
    th, tw = seen.shape[-2:]
    shown = torch.nn.functional.interpolate(
        x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x, size=(th, tw), mode="nearest"
    )
    rows = [
        np.concatenate([_to_uint8(a), _to_uint8(b)], axis=1)
        for a, b in zip(shown, seen, strict=True)
    ]
    model.train(was_training)
    return Image.fromarray(np.concatenate(rows, axis=0))
