"""*multidigits* and the digits' test split: construction, balance, and no leak between splits."""

from __future__ import annotations

import pytest
import torch

from losskit import components
from losskit.data import load_digits, multidigits
from losskit.data._multidigits import multidigits_data
from losskit.demo import digits_data
from losskit.errors import ConfigError
from losskit.tasks import MultiDigitsNet, mean_accuracy


@pytest.fixture(scope="module")
def data():
    return multidigits(seed=0, pairs=3000)


def test_shapes_and_sizes(data) -> None:
    assert (len(data.train), len(data.val), len(data.test)) == (2100, 450, 450)
    item = data.train[5]
    assert item["pixels"].shape == (144,)
    assert item["left"].dtype == torch.int64
    assert float(data.train.tensors["pixels"].min()) >= 0.0
    assert float(data.train.tensors["pixels"].max()) == 1.0


def test_canvas_is_the_pixelwise_max_of_the_two_placed_digits(data) -> None:
    digits = load_digits()
    item = data.test[7]
    left, right = item["sources"].tolist()
    canvas = torch.zeros(2, 12, 12)
    canvas[0, :8, :8] = digits.images[left]
    canvas[1, 4:12, 4:12] = digits.images[right]
    expected = canvas.amax(0).reshape(-1) / 16.0
    torch.testing.assert_close(item["pixels"], expected)
    assert int(item["left"]) == int(digits.labels[left])
    assert int(item["right"]) == int(digits.labels[right])


def test_the_digits_overlap(data) -> None:
    digits = load_digits()
    left, right = data.train[0]["sources"].tolist()
    ink_left = torch.zeros(12, 12)
    ink_left[:8, :8] = digits.images[left]
    ink_right = torch.zeros(12, 12)
    ink_right[4:, 4:] = digits.images[right]
    assert bool(((ink_left > 0) & (ink_right > 0)).any())


def test_no_source_image_is_shared_between_splits(data) -> None:
    def sources(split):
        return set(split.tensors["sources"].reshape(-1).tolist())

    train, val, test = sources(data.train), sources(data.val), sources(data.test)
    assert not train & val
    assert not train & test
    assert not val & test


def test_labels_are_balanced(data) -> None:
    for key in ("left", "right"):
        counts = torch.bincount(data.train.tensors[key], minlength=10).float()
        share = counts / counts.sum()
        assert float(share.min()) > 0.07
        assert float(share.max()) < 0.13


def test_seeded(data) -> None:
    again = multidigits(seed=0, pairs=3000)
    torch.testing.assert_close(again.train.tensors["pixels"], data.train.tensors["pixels"])
    other = multidigits(seed=1, pairs=3000)
    assert not torch.equal(other.train.tensors["sources"], data.train.tensors["sources"])


def test_config_source_and_holdout() -> None:
    train, val = components.DATA.create("multidigits", pairs=200)
    _, test = multidigits_data(pairs=200, holdout="test")
    assert (len(train), len(val), len(test)) == (140, 30, 30)
    assert not torch.equal(val.tensors["sources"], test.tensors["sources"])
    with pytest.raises(ConfigError, match="holdout must be 'val' or 'test'"):
        multidigits_data(holdout="train")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shift must lie in"):
        multidigits(shift=9)


def test_digits_test_split_is_disjoint_and_default_unchanged() -> None:
    train, val = digits_data()
    assert (len(train), len(val)) == (1438, 359)
    train, test = digits_data(test_fraction=0.2, holdout="test")
    _, val = digits_data(test_fraction=0.2)
    rows = {tuple(r.tolist()) for r in train.pixels}
    # the UCI set holds a few identical images; none of the test ones may be a training row
    # unless that image also occurs elsewhere in the source set
    counts: dict[tuple[float, ...], int] = {}
    for r in load_digits().images.reshape(-1, 64) / 16.0:
        counts[tuple(r.tolist())] = counts.get(tuple(r.tolist()), 0) + 1
    unique = [tuple(r.tolist()) for r in test.pixels if counts[tuple(r.tolist())] == 1]
    leaked = [r for r in unique if r in rows]
    assert not leaked
    assert len(val) + len(test) + len(train) == 1797
    with pytest.raises(ConfigError, match="holdout"):
        digits_data(holdout="test")


def test_model_and_metric() -> None:
    model = components.MODELS.create("multidigits_mlp")
    assert isinstance(model, MultiDigitsNet)
    out = {"left": torch.tensor([[3.0, 1.0], [0.0, 2.0]]), "right": torch.tensor([[1.0, 0.0]] * 2)}
    batch = {"left": torch.tensor([0, 0]), "right": torch.tensor([0, 1])}
    torch.testing.assert_close(mean_accuracy(out, batch), torch.tensor(0.5))
    with pytest.raises(ValueError, match="no output key"):
        mean_accuracy({"logits": torch.zeros(2, 3)}, {"label": torch.tensor([0, 1])})
