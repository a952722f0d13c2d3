"""Train step: backbone alone vs resizer + backbone vs STN + resizer + backbone.

    python bench/train_step.py                     # tiny demo ViT and vit_base at 224, CPU
    python bench/train_step.py --models vit_base_patch16_224 swin_base_patch4_window7_224 \
        --batch 128 --amp bf16 --device cuda       # what bench/gpu_check.sh runs

One optimisation step (forward, backward, AdamW) on 48x48 faces: the backbone alone sees
inputs already at its size; the resizer variants see the 48 px faces and produce that size.
Each row runs in a fresh process so its peak memory is its own. Reported: images/s, the
resizer's share of the step time, achieved TFLOP/s (FLOPs counted by torch's FlopCounter),
peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record  # noqa: E402

MODELS = {
    "demo_vit": {
        "backbone": "vit_tiny_patch16_224",
        "backbone_args": {
            "img_size": 56,
            "patch_size": 7,
            "embed_dim": 96,
            "depth": 4,
            "num_heads": 3,
        },
        "resizer": {"n": 8, "r": 1},
    },
}
VARIANTS = {
    "backbone": (False, False),
    "resizer+backbone": (True, False),
    "stn+resizer+backbone": (True, True),
}


def model_cfg(name: str, resizer: bool, stn: bool):
    """The model section to build: nrfer's validated ModelConfig, or (on a machine without
    pydantic, as the GPU box of ../shared/GPU_NOTES.md) the same fields with its defaults."""
    base = MODELS.get(name, {"backbone": name, "resizer": {"n": 16, "r": 1}})
    fields = {**base, "stn": stn, "resizer": {**base.get("resizer", {}), "enabled": resizer}}
    try:
        from nrfer.config import ModelConfig
    except ImportError:  # no pydantic
        from types import SimpleNamespace

        res = SimpleNamespace(**{"interpolation": "bilinear", **fields["resizer"]})
        defaults = {"backbone_args": {}, "pretrained": None, "input_size": None, "head": "linear"}
        cfg = SimpleNamespace(**{**defaults, "head_hidden": 512, "dropout": 0.0, **fields})
        cfg.resizer, cfg.timm_args = res, dict(cfg.backbone_args)
        return cfg
    return ModelConfig(**fields)


def one(
    name: str,
    variant: str,
    batch: int,
    steps: int,
    device: str,
    amp: str,
    channels_last: bool,
    compile_: bool,
) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from nrfer.models import build_model

    resizer, stn = VARIANTS[variant]
    dev = torch.device(device)
    model = build_model(model_cfg(name, resizer, stn), 8).to(dev)
    size = 48 if resizer else model.target_size[0]
    x = torch.rand(batch, 1, size, size, device=dev)
    y = torch.randint(0, 8, (batch,), device=dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:  # counted on the eager model, one step
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
    opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    for _ in range(2):  # warm-up (and compilation)
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "model": name,
        "variant": variant,
        "batch": batch,
        "step_s": dt,
        "img_s": batch / dt,
        "tflops": flops / dt / 1e12,
        "peak_mib": peak,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["demo_vit", "vit_base_patch16_224"])
    parser.add_argument(
        "--batch", type=int, default=None, help="default: 64 for demo_vit, 8 otherwise (CPU)"
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=("off", "bf16"), default="off")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(
            json.dumps(
                one(
                    args.one[0],
                    args.one[1],
                    args.batch,
                    args.steps,
                    args.device,
                    args.amp,
                    args.channels_last,
                    args.compile,
                )
            )
        )
        return []
    rows, failed = [], []
    for name in args.models:
        batch = args.batch or (64 if name in MODELS else 8)
        base_t = None
        for variant in VARIANTS:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                name,
                variant,
                "--batch",
                str(batch),
                "--steps",
                str(args.steps),
                "--device",
                args.device,
                "--amp",
                args.amp,
            ]
            cmd += ["--channels-last"] if args.channels_last else []
            cmd += ["--compile"] if args.compile else []
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                failed.append(f"{name} {variant} (exit {out.returncode})")
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            base_t = row["step_s"] if variant == "backbone" else base_t
            row["resizer_share"] = (
                1 - base_t / row["step_s"] if base_t and variant != "backbone" else 0.0
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(
        f"train step ({args.device}, amp {args.amp}, channels_last {args.channels_last}, compile {args.compile})",
        rows,
    )
    if failed:  # nothing recorded: a table with holes would read as a result
        print(f"FAILED: {len(failed)} of {len(failed) + len(rows)} rows: " + "; ".join(failed))
        raise SystemExit(1)
    record(
        f"train_step_{args.device}_{args.amp}{'_cl' if args.channels_last else ''}{'_compile' if args.compile else ''}",
        rows,
    )
    return rows


if __name__ == "__main__":
    main()
