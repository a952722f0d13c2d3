import math

import pytest
import torch

from nrfer.losses import LOSSES
from nrfer.registry import UnknownNameError

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
LABELS = torch.tensor([0, 2])
PRIOR = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])


def probs():
    return [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in LOGITS.tolist()]


def by_hand(targets, gamma=0.0):
    """-mean_b sum_k T_bk (1 - p_bk)^gamma log p_bk, in plain Python."""
    total = 0.0
    for p_row, t_row in zip(probs(), targets, strict=True):
        total += -sum(t * (1 - p) ** gamma * math.log(p) for p, t in zip(p_row, t_row, strict=True))
    return total / len(targets)


def onehot(y):
    return [[1.0 if k == c else 0.0 for k in range(3)] for c in y]


def pdls_targets(alpha):
    return [
        [alpha * o + (1 - alpha) * d for o, d in zip(oh, PRIOR[c].tolist(), strict=True)]
        for oh, c in zip(onehot(LABELS.tolist()), LABELS.tolist(), strict=True)
    ]


@pytest.mark.parametrize(
    "name, kwargs, targets, gamma",
    [
        ("ce", {}, onehot([0, 2]), 0.0),
        ("ls", {"smoothing": 0.3}, [[0.7 * o + 0.1 for o in row] for row in onehot([0, 2])], 0.0),
        ("pdls", {"alpha": 0.8, "prior": PRIOR}, pdls_targets(0.8), 0.0),
        ("focal", {"gamma": 2.0}, onehot([0, 2]), 2.0),
        ("fpdls", {"alpha": 0.8, "gamma": 2.0, "prior": PRIOR}, pdls_targets(0.8), 2.0),
    ],
)
def test_each_loss_matches_a_hand_computation(name, kwargs, targets, gamma):
    loss = LOSSES.create(name, num_classes=3, **kwargs)
    assert loss(LOGITS, LABELS).item() == pytest.approx(by_hand(targets, gamma), rel=1e-5)


def test_ce_equals_torch_cross_entropy_and_accepts_soft_targets():
    ce = LOSSES.create("ce", num_classes=3)
    assert ce(LOGITS, LABELS).item() == pytest.approx(
        torch.nn.functional.cross_entropy(LOGITS, LABELS).item(), rel=1e-6
    )
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    assert ce(LOGITS, soft).item() == pytest.approx(by_hand(soft.tolist()), rel=1e-5)


def test_fpdls_with_alpha_one_is_focal():
    a = LOSSES.create("fpdls", num_classes=3, alpha=1.0, gamma=2.0, prior=PRIOR)(LOGITS, LABELS)
    b = LOSSES.create("focal", num_classes=3, gamma=2.0)(LOGITS, LABELS)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_prior_losses_need_a_prior_and_unknown_names_are_listed():
    with pytest.raises(ValueError, match="needs a prior"):
        LOSSES.create("pdls", num_classes=3)
    with pytest.raises(UnknownNameError, match="did you mean 'focal'"):
        LOSSES.create("focall", num_classes=3)
    with pytest.raises(ValueError, match="prior must be 3x3"):
        LOSSES.create("fpdls", num_classes=3, prior=torch.eye(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["focal", "fpdls"])
def test_focal_losses_stay_finite_when_a_class_saturates(name, dtype):
    """gamma < 1: the gradient of (1 - p)^gamma is infinite at p = 1 (logits of +-100)."""
    loss_fn = LOSSES.create(name, num_classes=3, gamma=0.5, alpha=0.8, prior=PRIOR)
    logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, 0.0]], dtype=dtype)
    logits.requires_grad_(True)
    for labels in (torch.tensor([0, 1]), torch.tensor([1, 2])):  # right and wrong, saturated
        loss = loss_fn(logits, labels)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad.float()).all(), (labels, grad)
    # away from saturation the floor changes nothing: the formula by hand still holds
    plain = LOSSES.create("focal", num_classes=3, gamma=0.5)(LOGITS, LABELS)
    assert plain.item() == pytest.approx(by_hand(onehot(LABELS.tolist()), gamma=0.5), rel=1e-5)
