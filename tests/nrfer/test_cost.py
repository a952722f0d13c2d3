"""nrfer.cost on models whose parameters and FLOPs are worked by hand."""

import pytest
import torch

from nrfer.cost import count_params, forward_flops, latency_ms, measure


def test_params_and_flops_of_a_linear_and_a_conv_by_hand():
    linear = torch.nn.Linear(10, 4)
    assert count_params(linear) == 10 * 4 + 4
    assert forward_flops(linear, torch.rand(3, 10)) == 2 * 3 * 10 * 4  # a multiply-add = 2
    conv = torch.nn.Conv2d(2, 5, kernel_size=3, padding=1, bias=False)
    assert count_params(conv) == 5 * 2 * 3 * 3
    # each of 5 x 8 x 8 outputs: 2 x 3 x 3 multiply-adds
    assert forward_flops(conv, torch.rand(1, 2, 8, 8)) == 2 * (5 * 8 * 8) * (2 * 3 * 3)
    twice = torch.nn.Linear(4, 4)
    shared = torch.nn.Sequential(twice, torch.nn.ReLU(), twice)  # one layer used twice:
    assert count_params(shared) == 16 + 4  # its weights counted once,
    assert forward_flops(shared, torch.rand(1, 4)) == 2 * (2 * 4 * 4)  # its FLOPs twice


def test_latency_is_a_warm_median_and_measure_reports_per_batch():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 8))
    ms = latency_ms(model, torch.rand(4, 1, 48, 48), repeats=5, warmup=1)
    assert 0 < ms < 1000
    with pytest.raises(ValueError, match="repeats 0 must be >= 1"):
        latency_ms(model, torch.rand(1, 1, 48, 48), repeats=0)
    cost = measure(model, (1, 48, 48), batches=(1, 8), repeats=3)
    assert cost.params == 48 * 48 * 8 + 8
    assert cost.gflops == pytest.approx(2 * 48 * 48 * 8 / 1e9)
    assert set(cost.latency_ms) == {1, 8} and all(v > 0 for v in cost.latency_ms.values())
    metrics = cost.to_metrics()
    assert set(metrics) == {"params", "gflops", "latency_ms_b1", "latency_ms_b8", "latency_ms"}
    assert metrics["latency_ms"] == metrics["latency_ms_b1"]  # one face at a time
    assert "latency_ms" not in measure(model, (1, 48, 48), batches=(8,), repeats=1).to_metrics()
    assert model.training  # left as it was
