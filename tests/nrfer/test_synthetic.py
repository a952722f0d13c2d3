import numpy as np
import pytest

from helpers import SHARED_VOTES
from nrfer.data.ferplus import read_ferplus, read_votes_csv
from nrfer.data.labels import process_vote_table
from nrfer.data.synthetic import VOTE_PRIOR, generate, main, write_ferplus


def test_generator_is_deterministic_by_seed(tmp_path):
    a = write_ferplus(tmp_path / "a", seed=5, n_train=40, n_val=10, n_test=10)
    b = write_ferplus(tmp_path / "b", seed=5, n_train=40, n_val=10, n_test=10)
    c = write_ferplus(tmp_path / "c", seed=6, n_train=40, n_val=10, n_test=10)
    for name in ("fer2013.csv", "fer2013new.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "fer2013.csv").read_bytes() != (c / "fer2013.csv").read_bytes()


def test_cli_writes_the_microsoft_format_read_by_the_real_reader(tmp_path, capsys):
    assert (
        main(
            [
                "--out",
                str(tmp_path / "s"),
                "--seed",
                "1",
                "--n-train",
                "300",
                "--n-val",
                "60",
                "--n-test",
                "60",
            ]
        )
        == 0
    )
    head = (tmp_path / "s" / "fer2013new.csv").read_text().splitlines()[0]
    assert (
        head
        == "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    )
    data = read_ferplus(tmp_path / "s")
    # the FERPlus rules drop the faces whose votes have no majority or say not-a-face
    assert 0.75 * 300 < len(data.train) < 300 and 0 < len(data.val) <= 60
    assert data.train.images.shape[1:] == (1, 48, 48)
    per_class = data.train.per_class()
    assert all(n > 0 for n in per_class[:5]) and sum(per_class) == len(data.train)


def test_votes_are_noisy_like_fer_plus():
    gen = generate(0, 2000, 0, 0)
    classes, votes = gen["classes"], gen["votes"]
    face = classes >= 0
    assert (~face).sum() > 0 and (votes[~face, -1] == 10).all()
    agree = votes[face][np.arange(face.sum()), classes[face]] / 10
    # on average ~75% of votes for the drawn class, as in real FER+; not all unanimous
    assert 0.65 < agree.mean() < 0.85 and (agree < 1).mean() > 0.5
    # images differ by class: mean mouth-region brightness of happy vs surprise differs
    imgs = gen["images"].astype(float)
    assert (
        abs(imgs[classes == 1, 30:40, 18:30].mean() - imgs[classes == 2, 30:40, 18:30].mean()) > 1
    )


@pytest.mark.skipif(not SHARED_VOTES.is_file(), reason="real FER+ label file not available")
def test_embedded_prior_matches_the_real_votes():
    _, _, votes = read_votes_csv(SHARED_VOTES)
    kept, targets = process_vote_table(votes, "majority")
    labels = targets.argmax(1)
    dist = votes[kept] / votes[kept].sum(1, keepdims=True)
    prior = np.stack([dist[labels == c].mean(0) for c in range(8)])
    np.testing.assert_allclose(VOTE_PRIOR, prior, atol=6e-5)
