"""Inference latency: onnxruntime (CPU) against torch eager on the same exported model.

    python bench/onnx_latency.py                       # the demo ViT and a ViT-S/16 at 224
    python bench/onnx_latency.py --models demo_vit --repeat 50

Each model (random weights: latency does not depend on them) is exported by nrfer.export
(STN, resizer, backbone and softmax in one graph, checked against PyTorch), then both run
the same preprocessed faces at batch 1 and batch 64, side by side in this process with the
same thread count (each of --threads): a few warm-up calls, then --rounds rounds that each
time --repeat calls of torch and of onnxruntime, interleaved so a slow spell of the machine
hits both. Reported: the median milliseconds per call, and the ratio torch / onnxruntime
(> 1: onnxruntime faster) as the median of the rounds' ratios with its 95% bootstrap
interval and the rounds' range; the CPU model and thread count beside it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record  # noqa: E402
from train_step import MODELS as TRAIN_STEP_MODELS  # noqa: E402  # the same demo ViT

MODELS = {
    "demo_vit": {  # nrfer/configs/demo.yaml's model: 48 px faces -> resizer -> ViT at 56 px
        "input": 56,
        "model": {**TRAIN_STEP_MODELS["demo_vit"], "resizer": {"enabled": True, "n": 8, "r": 1}},
    },
    "vit_s16_224_stn": {  # a deployable size: x2 SR faces (96 px) -> STN -> resizer -> 224
        "input": 224,
        "sr": 2,
        "model": {
            "backbone": "vit_small_patch16_224",
            "backbone_args": {},
            "resizer": {"enabled": True, "n": 16, "r": 1},
            "stn": True,
        },
    },
}


def checkpoint(name: str) -> dict:
    """A best.pt-shaped state of the model `name` with random weights."""
    from nrfer.config import make_config
    from nrfer.data import EMOTIONS
    from nrfer.models import build_model

    spec = MODELS[name]
    sr = spec.get("sr")
    data = {"dataset": "synthetic"}
    if sr:
        data["sr"] = {"method": "bicubic", "scale": sr}
    cfg = make_config({"data": data, "model": {**spec["model"], "input_size": spec["input"]}})
    side = 48 * (sr or 1)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(EMOTIONS), (side, side))
    return {
        "kind": "model",
        "model": model.state_dict(),
        "config": cfg.to_dict(),
        "class_names": list(EMOTIONS),
        "input_shape": [1, side, side],
    }


def median_ms(fn, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rounds_ratio(eager, onnx, rounds: int, repeat: int) -> tuple[float, float, list[float]]:
    """(median torch ms, median ORT ms, each round's torch/ORT ratio of medians)."""
    median_ms(eager, 1, warmup=3)
    median_ms(onnx, 1, warmup=3)
    ratios, t_all, o_all = [], [], []
    for _ in range(rounds):
        t, o = median_ms(eager, repeat, warmup=0), median_ms(onnx, repeat, warmup=0)
        t_all.append(t)
        o_all.append(o)
        ratios.append(t / o)
    return statistics.median(t_all), statistics.median(o_all), ratios


def bootstrap_median(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(0)
    v = np.asarray(values)
    meds = np.median(rng.choice(v, (resamples, len(v))), axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def bench(
    name: str, repeat: int, batches: list[int], rounds: int = 15, threads: int = 0
) -> list[dict]:
    import onnxruntime as ort

    from nrfer.export import export_onnx
    from nrfer.predict import Predictor

    if threads:
        torch.set_num_threads(threads)
    state = checkpoint(name)
    predictor = Predictor(state, "cpu")
    model = predictor.model.eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(state, Path(tmp) / f"{name}.onnx", faces=8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            str(exported.path), options, providers=["CPUExecutionProvider"]
        )
        for batch in batches:
            x = torch.rand(batch, *exported.input_shape)
            xn = x.numpy()

            def eager(x=x):
                with torch.inference_mode():
                    torch.softmax(model(x), 1)

            def onnx(xn=xn):
                session.run(["probabilities"], {"faces": xn})

            reps = max(3, repeat // 4) if batch > 8 else repeat
            t_torch, t_ort, ratios = rounds_ratio(eager, onnx, rounds, reps)
            low, high = bootstrap_median(ratios)
            rows.append(
                {
                    "model": name,
                    "input": f"{exported.input_shape[1]}px",
                    "batch": batch,
                    "threads": torch.get_num_threads(),
                    "torch_ms": t_torch,
                    "onnxruntime_ms": t_ort,
                    "ratio_torch_over_ort": statistics.median(ratios),
                    "ratio_ci95": f"[{low:.2f}, {high:.2f}]",
                    "ratio_range": f"{min(ratios):.2f}-{max(ratios):.2f}",
                    "rounds": f"{rounds} x {reps} calls",
                    "max_abs_diff": exported.max_abs_diff,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per round at batch 1")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args(argv)
    rows = [
        r
        for threads in args.threads
        for name in args.models
        for r in bench(name, args.repeat, args.batches, args.rounds, threads)
    ]
    machine = f"{cpu_model()}, {torch.get_num_threads()} threads max"
    print_table(f"inference latency: torch eager vs onnxruntime (CPU: {machine})", rows)
    record("onnx_latency", rows, {"repeat": args.repeat, "rounds": args.rounds, "cpu": cpu_model()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
