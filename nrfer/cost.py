"""What a model costs to run: parameters, FLOPs of one forward pass (torch's FlopCounterMode)
and latency (warm, median of N calls) at a batch size, on a device: the numbers a
multi-objective sweep trades accuracy against (issue 36's building block; bench/onnx_latency.py
measures the exported graph the same way).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch


def count_params(model: torch.nn.Module) -> int:
    """Every parameter (trainable or not), each shared tensor once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.inference_mode()
def forward_flops(model: torch.nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on `example` (a multiply-add counts 2), as torch's
    FlopCounterMode counts them (matrix products and convolutions; elementwise ops are free)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example)
    model.train(was_training)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def latency_ms(
    model: torch.nn.Module, example: torch.Tensor, repeats: int = 20, warmup: int = 3
) -> float:
    """The median wall time of `repeats` forward passes on `example` (after `warmup` ones), in
    milliseconds, on the example's device (CUDA synchronised around each call)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats {repeats} must be >= 1 and warmup {warmup} >= 0")
    was_training = model.training
    model.eval()
    for _ in range(warmup):
        model(example)
    _sync(example.device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(example)
        _sync(example.device)
        times.append(time.perf_counter() - t0)
    model.train(was_training)
    return 1000 * statistics.median(times)


@dataclass(frozen=True)
class Cost:
    params: int
    gflops: float  # of one face's forward pass
    latency_ms: dict[int, float]  # batch size -> median ms per call

    def to_metrics(self) -> dict[str, float]:
        """`params`, `gflops`, `latency_ms_b<B>` per batch size B, and `latency_ms`: batch 1's
        (one face at a time: the phone or robot case) where batch 1 was measured."""
        out: dict[str, float] = {"params": float(self.params), "gflops": self.gflops}
        out.update({f"latency_ms_b{b}": v for b, v in self.latency_ms.items()})
        if 1 in self.latency_ms:
            out["latency_ms"] = self.latency_ms[1]
        return out


def measure(
    model: torch.nn.Module,
    input_shape: tuple[int, int, int],
    device: str | torch.device = "cpu",
    batches: tuple[int, ...] = (1, 64),
    repeats: int = 20,
    warmup: int = 3,
) -> Cost:
    """A model's cost at its input shape (C, H, W) on `device`: parameters, GFLOPs per face,
    and latency at each batch size (random input: the time does not depend on the values)."""
    device = torch.device(device)
    model = model.to(device)
    one = torch.rand(1, *input_shape, device=device)
    flops = forward_flops(model, one)
    times = {
        b: latency_ms(model, torch.rand(b, *input_shape, device=device), repeats, warmup)
        for b in batches
    }
    return Cost(count_params(model), flops / 1e9, times)


def config_cost(
    model_cfg,
    num_classes: int,
    input_shape: tuple[int, int, int],
    device: str | torch.device = "cpu",
    batches: tuple[int, ...] = (1, 64),
    repeats: int = 20,
    warmup: int = 3,
) -> Cost:
    """What the model of `model_cfg` (nrfer.config.ModelConfig) costs on faces of
    `input_shape`: a fresh, randomly initialised copy measured and dropped (cost depends on
    the architecture, not the weights; a pretrained file is not read)."""
    from nrfer.models import build_model

    cfg = model_cfg.model_copy(update={"pretrained": None})
    channels, height, width = input_shape
    model = build_model(cfg, num_classes, (height, width))
    try:
        return measure(model, (channels, height, width), device, tuple(batches), repeats, warmup)
    finally:
        del model
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
