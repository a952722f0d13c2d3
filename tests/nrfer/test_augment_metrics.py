import pytest
import torch

from nrfer.config import AugmentConfig
from nrfer.data.augment import augment_batch
from nrfer.metrics import confusion_update, summarize


def test_augment_is_batched_bounded_and_reproducible():
    x = torch.rand(16, 1, 48, 48)
    cfg = AugmentConfig()
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)
    assert augment_batch(x, AugmentConfig(enabled=False), torch.Generator()) is x


def test_flip_alone_mirrors_exactly_the_chosen_images():
    x = torch.rand(32, 1, 8, 8)
    cfg = AugmentConfig(
        flip=1.0, rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0, erase=0
    )
    torch.testing.assert_close(augment_batch(x, cfg, torch.Generator()), x.flip(-1))


def test_metrics_are_sample_weighted_from_the_confusion_matrix():
    conf = torch.zeros(3, 3, dtype=torch.long)
    confusion_update(conf, torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 2, 0]))
    assert conf.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    m = summarize(conf)
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == pytest.approx([0.5, 0.5, 1.0])
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * 1.0 * 0.5 / 1.5, 2 * (2 / 3) * 1.0 / (2 / 3 + 1)]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
