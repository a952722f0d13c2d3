"""McNemar's exact test and the Welch interval against hand-computed cases and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from sweep.significance import disagreements, mcnemar_exact, mean_std, welch_interval


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 2 * (1 + 10) / 2**10),  # 0.021484375
        (0, 5, 2 / 2**5),  # 0.0625
        (3, 3, 1.0),  # a balanced split is no evidence
        (0, 0, 1.0),  # no disagreement at all
        (10, 0, 2 / 2**10),
        (2, 8, 2 * (1 + 10 + 45) / 2**10),  # 0.109375
    ],
)
def test_mcnemar_exact_hand_computed(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact(c, b) == pytest.approx(p, rel=1e-12)  # symmetric


@pytest.mark.parametrize(("b", "c"), [(17, 31), (120, 95), (0, 1), (400, 460), (7, 7)])
def test_mcnemar_exact_is_scipys_two_sided_binomial_test(b, c):
    reference = stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(reference, rel=1e-9)


def test_disagreements_count_the_discordant_faces():
    labels = np.array([0, 1, 2, 3, 0, 1])
    a = np.array([0, 1, 0, 3, 1, 2])  # right on 0, 1, 3
    b = np.array([0, 0, 2, 3, 1, 1])  # right on 0, 2, 3, 5
    assert disagreements(a, b, labels) == (1, 2)  # only a: face 1; only b: faces 2, 5


def test_welch_interval_matches_scipy():
    a, b = [0.612, 0.634, 0.601], [0.588, 0.579, 0.602]
    diff, lo, hi = welch_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(a) - np.mean(b))
    assert (lo, hi) == (pytest.approx(ref.low), pytest.approx(ref.high))
    # hand-computed: two seeds each, equal spread -> dof 2, t_{0.975,2} = 4.302652...
    diff, lo, hi = welch_interval([1.0, 3.0], [0.0, 2.0])
    half = 4.302652729911275 * math.sqrt(2 / 2 + 2 / 2)
    assert (diff, lo, hi) == (1.0, pytest.approx(1 - half), pytest.approx(1 + half))


def test_welch_interval_needs_two_seeds_each_and_mean_std():
    assert welch_interval([0.5], [0.4, 0.41]) is None
    assert welch_interval([0.5, 0.5], [0.4, 0.4]) == (pytest.approx(0.1),) * 3
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([0.1, 0.2, 0.3])
    assert m == pytest.approx(0.2) and s == pytest.approx(0.1)
