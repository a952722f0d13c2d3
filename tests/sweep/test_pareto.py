"""The Pareto front and --pick on hand-worked points (issue 36's building blocks)."""

import pytest

from sweep.analysis.pareto import choose, dominates, fronts, pareto_front, parse_pick

SENSES = {"val_acc": "max", "latency_ms": "min"}
# worked by hand: a (0.80, 9 ms) and b (0.75, 3 ms) and d (0.70, 2 ms) trade off; c (0.74,
# 4 ms) is dominated by b; e (0.80, 12 ms) by a; f equals b (both kept); g lacks latency
POINTS = [
    {"val_acc": 0.80, "latency_ms": 9.0},  # a
    {"val_acc": 0.75, "latency_ms": 3.0},  # b
    {"val_acc": 0.74, "latency_ms": 4.0},  # c
    {"val_acc": 0.70, "latency_ms": 2.0},  # d
    {"val_acc": 0.80, "latency_ms": 12.0},  # e
    {"val_acc": 0.75, "latency_ms": 3.0},  # f
    {"val_acc": 0.99},  # g
]


def test_dominance_and_the_front():
    a, b, c, _, e, f, _ = POINTS
    assert dominates(b, c, SENSES) and dominates(a, e, SENSES)
    assert not dominates(a, b, SENSES) and not dominates(b, a, SENSES)
    assert not dominates(b, f, SENSES)  # equal: neither dominates
    assert pareto_front(POINTS, SENSES) == [0, 1, 3, 5]
    assert fronts(POINTS, SENSES) == [[0, 1, 3, 5], [2, 4]]
    # one objective: the front is the best point(s)
    assert pareto_front(POINTS[:6], {"val_acc": "max"}) == [0, 4]
    with pytest.raises(ValueError, match="sense 'maximum'"):
        pareto_front(POINTS, {"val_acc": "maximum"})


def test_pick_reads_the_issue_example_and_chooses_by_hand():
    pick = parse_pick("max val_acc where latency_ms < 5")
    assert (pick.sense, pick.objective, pick.constraints) == (
        "max",
        "val_acc",
        (("latency_ms", "<", 5.0),),
    )
    assert choose(POINTS, pick) == 1  # b and f tie at 0.75: the first
    assert choose(POINTS, parse_pick("max val_acc")) == 6  # g: no constraint to miss
    assert choose(POINTS, parse_pick("min latency_ms where val_acc >= 0.74")) == 1
    both = parse_pick("MAX val_acc where latency_ms <= 9 and val_acc > 0.7")
    assert choose(POINTS, both) == 0
    assert parse_pick("min params where gflops<1e-1").constraints == (("gflops", "<", 0.1),)


def test_bad_picks_name_the_part_and_the_form():
    with pytest.raises(ValueError, match=r"--pick 'best val_acc': expected 'max\|min OBJECTIVE"):
        parse_pick("best val_acc")
    with pytest.raises(ValueError, match=r"cannot read the constraint 'latency_ms ~ 5'"):
        parse_pick("max val_acc where latency_ms ~ 5")
    with pytest.raises(ValueError, match=r"no trial has flops \(they have: latency_ms, val_acc\)"):
        choose(POINTS, parse_pick("max val_acc where flops < 5"))
    with pytest.raises(ValueError, match=r"no trial meets latency_ms < 1 \(of 7 trials\)"):
        choose(POINTS, parse_pick("max val_acc where latency_ms < 1"))
