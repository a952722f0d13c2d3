import numpy as np
import pytest

from nrfer.data.labels import process_vote_table, process_votes

#        neu hap sur sad ang dis fea con unk NF


def votes(*v):
    return np.array(v, dtype=np.float32)


def test_single_votes_are_outliers_and_majority_needs_more_than_half():
    # after dropping the 1-vote sadness: 4 of 9 votes for neutral is not a majority
    assert process_votes(votes(4, 0, 0, 1, 3, 2, 0, 0, 0, 0), "majority") is None
    # 6 of 8 (the unknown votes count in the total) is
    t = process_votes(votes(6, 0, 1, 1, 0, 0, 0, 0, 2, 0), "majority")
    np.testing.assert_allclose(t, np.eye(8)[0])


def test_crossentropy_keeps_top_emotions_until_75_percent():
    t = process_votes(votes(4, 0, 0, 1, 3, 2, 0, 0, 0, 0), "crossentropy")
    # 4 + 3 = 7 of 9 >= 75%: neutral and anger, renormalised
    np.testing.assert_allclose(t, [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0], rtol=1e-6)


def test_ties_are_kept_together_and_more_than_three_is_dropped():
    np.testing.assert_allclose(
        process_votes(votes(3, 3, 3, 0, 0, 0, 0, 0, 0, 1), "crossentropy"),
        [1 / 3] * 3 + [0] * 5,
        rtol=1e-6,
    )
    assert process_votes(votes(3, 3, 3, 0, 0, 0, 0, 0, 0, 1), "majority") is None
    assert process_votes(votes(2, 2, 2, 2, 2, 0, 0, 0, 0, 0), "crossentropy") is None


def test_unknown_or_nf_dominated_faces_are_dropped():
    nf_row = votes(0, 0, 0, 0, 0, 0, 0, 0, 0, 10)  # the empty-name rows of fer2013new.csv
    for mode in ("majority", "crossentropy", "probability"):
        assert process_votes(nf_row, mode) is None
    assert process_votes(votes(0, 0, 0, 0, 0, 0, 0, 0, 6, 4), "crossentropy") is None
    # unknown ties the top emotion: the emotion alone covers only half the votes -> dropped
    assert process_votes(votes(5, 0, 0, 0, 0, 0, 0, 0, 5, 0), "crossentropy") is None
    assert process_votes(votes(7, 0, 0, 0, 0, 0, 0, 0, 3, 0), "majority") is not None


def test_table_returns_kept_rows_in_order():
    table = np.stack(
        [
            votes(0, 10, 0, 0, 0, 0, 0, 0, 0, 0),
            votes(0, 0, 0, 0, 0, 0, 0, 0, 0, 10),
            votes(0, 0, 8, 2, 0, 0, 0, 0, 0, 0),
        ]
    )
    kept, targets = process_vote_table(table, "majority")
    assert kept.tolist() == [0, 2]
    assert targets.argmax(1).tolist() == [1, 2]


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="majority, crossentropy, probability"):
        process_votes(votes(10, 0, 0, 0, 0, 0, 0, 0, 0, 0), "soft")
