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


def test_a_tie_on_the_objective_goes_to_the_point_that_dominates_on_the_others():
    """Three trials at the same val_acc: the one at 24.8 ms dominates the one at 71.3 ms and
    is chosen whatever the order; with the sweep's own objectives (here params) too."""
    tied = [
        {"val_acc": 0.7, "latency_ms": 71.3, "params": 5e5},
        {"val_acc": 0.7, "latency_ms": 40.0, "params": 4e5},
        {"val_acc": 0.7, "latency_ms": 24.8, "params": 4e5},
        {"val_acc": 0.6, "latency_ms": 1.0, "params": 1e3},
    ]
    pick = parse_pick("max val_acc")
    assert choose(tied, pick) == 2
    assert choose(tied[::-1], pick) == 1  # the same trial, listed second
    # two tied trials neither of which dominates: the first of them
    split = [
        {"val_acc": 0.7, "latency_ms": 30.0, "params": 1e5},
        {"val_acc": 0.7, "latency_ms": 20.0, "params": 2e5},
    ]
    assert choose(split, pick) == 0
    # an objective of the sweep that is not a cost: its sense counts
    own = [{"val_acc": 0.7, "val_macro_f1": 0.5}, {"val_acc": 0.7, "val_macro_f1": 0.6}]
    assert choose(own, pick, {"val_acc": "max", "val_macro_f1": "max"}) == 1


def test_a_pick_of_40000_digits_is_read_at_once():
    """The number pattern has one way to read each digit run: 40,000 digits and a stray
    letter fail in milliseconds (the old pattern backtracked for about 2 minutes); over
    1,000 characters a pick is refused by its length."""
    import re
    import time

    from sweep.analysis import pareto

    digits = "1" * 40_000 + "x"
    start = time.perf_counter()
    assert re.match(rf"^{pareto._NUMBER}$", digits) is None
    assert pareto._CONSTRAINT.match(f"latency_ms < {digits}") is None
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="at most 1000"):
        parse_pick(f"max val_acc where latency_ms < {digits}")
    with pytest.raises(ValueError, match="cannot read the constraint"):
        parse_pick("max val_acc where latency_ms < " + "1" * 900 + "x")
