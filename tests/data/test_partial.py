"""partially_labelled_digits: disjoint training sets that annotate different targets."""

from __future__ import annotations

import pytest
import torch

import losskit as lk
from losskit.data import DigitsDataset, load_digits, partially_labelled_digits
from losskit.demo import digits_data

TRAIN_SIZE = 1438  # the digits' training split at val_fraction=0.2


def _rows(pixels: torch.Tensor) -> torch.Tensor:
    """One number per image, to compare sets of images regardless of order."""
    code = torch.randn(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (pixels.double() @ code).sort().values


def test_every_training_sample_is_dealt_to_exactly_one_set() -> None:
    parts = partially_labelled_digits(seed=3, both_fraction=0.25, class_fraction=0.6)
    train, _ = load_digits().split(0.2, seed=3)
    dealt = torch.cat([ds.tensors["pixels"] for ds in parts.train])
    torch.testing.assert_close(_rows(dealt), _rows(DigitsDataset(train).pixels))
    assert len(parts.both) == round(TRAIN_SIZE * 0.25)
    assert len(parts.classes) == round((TRAIN_SIZE - len(parts.both)) * 0.6)


def test_each_set_holds_only_its_annotations_and_batches_keep_them() -> None:
    parts = partially_labelled_digits()
    everything = ("pixels", "label", "image", "ink")
    assert [ds.keys for ds in parts] == [
        ("pixels", "label"),
        ("pixels", "image", "ink"),
        everything,
        everything,
    ]
    batch = next(iter(torch.utils.data.DataLoader(parts.images, batch_size=8)))
    assert sorted(batch) == ["image", "ink", "pixels"]
    torch.testing.assert_close(batch["image"], batch["pixels"])


def test_annotations_match_the_demo_digits() -> None:
    parts = partially_labelled_digits(seed=0)
    _, val = digits_data(0.2, seed=0)
    torch.testing.assert_close(parts.val.tensors["pixels"], val.pixels)
    torch.testing.assert_close(parts.val.tensors["label"], val.labels)
    torch.testing.assert_close(parts.val.tensors["ink"], val.ink)  # standardised on training data


def test_the_seed_decides_everything() -> None:
    a, b, c = (partially_labelled_digits(seed=s) for s in (1, 1, 2))
    torch.testing.assert_close(a.classes.tensors, b.classes.tensors)
    assert not torch.equal(a.classes.tensors["label"], c.classes.tensors["label"])


@pytest.mark.parametrize("both", [0.0, 1.0])
def test_extreme_fractions_leave_sets_empty(both: float) -> None:
    parts = partially_labelled_digits(both_fraction=both)
    assert len(parts.both) == round(TRAIN_SIZE * both)
    assert len(parts.classes) + len(parts.images) == TRAIN_SIZE - len(parts.both)


@pytest.mark.parametrize("name", ["both_fraction", "class_fraction", "val_fraction"])
def test_a_fraction_outside_zero_one_is_refused(name: str) -> None:
    with pytest.raises(lk.ConfigError, match=name):
        partially_labelled_digits(**{name: 1.5})  # type: ignore[arg-type]
