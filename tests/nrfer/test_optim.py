"""Every registered optimiser and LR schedule, built from the config as fit builds them."""

import pytest
import torch

from nrfer.config import OptimConfig, SchedulerConfig
from nrfer.models.backbone import HEADS
from nrfer.optim import OPTIMIZERS, SCHEDULERS, build_lr_schedule, build_optimizer


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step_and_spares_norms_from_decay(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.1, weight_decay=0.5))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]  # weights / biases+norms
    before = model[0].weight.detach().clone()
    model(torch.randn(8, 4)).square().mean().backward()
    opt.step()
    assert not torch.equal(before, model[0].weight)


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_lr_schedule_runs_the_epochs(name):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    schedule = build_lr_schedule(opt, SchedulerConfig(name=name, step_size=2, gamma=0.5), 6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1.0) and all(0 <= lr <= 1.0 for lr in lrs)
    expected = {"none": [1.0] * 6, "step": [1, 1, 0.5, 0.5, 0.25, 0.25]}
    if name in expected:
        assert lrs == pytest.approx(expected[name])
    if name == "cosine":
        assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.1


@pytest.mark.parametrize("name", HEADS.names())
def test_every_head_maps_features_to_classes(name):
    head = HEADS.create(name, in_features=16, num_classes=7, hidden=8, dropout=0.5).eval()
    assert head(torch.randn(4, 16)).shape == (4, 7)
