"""KeyedTensorDataset: dict items that the default collate batches, with only their keys."""

from __future__ import annotations

import pytest
import torch

import losskit as lk
from losskit.data import KeyedTensorDataset


def test_items_and_batches_hold_exactly_the_given_keys() -> None:
    ds = KeyedTensorDataset(x=torch.arange(10.0).reshape(5, 2), y=torch.arange(5))
    assert ds.keys == ("x", "y")
    torch.testing.assert_close(ds[2], {"x": torch.tensor([4.0, 5.0]), "y": torch.tensor(2)})
    batches = list(torch.utils.data.DataLoader(ds, batch_size=2))
    assert [sorted(b) for b in batches] == [["x", "y"]] * 3
    torch.testing.assert_close(torch.cat([b["y"] for b in batches]), torch.arange(5))


def test_an_empty_dataset_has_no_batches() -> None:
    ds = KeyedTensorDataset(x=torch.zeros(0, 3))
    assert len(ds) == 0
    assert list(torch.utils.data.DataLoader(ds, batch_size=4)) == []


@pytest.mark.parametrize(
    "tensors",
    [{}, {"x": torch.zeros(3), "y": torch.zeros(4)}, {"x": torch.tensor(1.0)}],
    ids=["none", "different-lengths", "scalar"],
)
def test_tensors_that_do_not_share_a_sample_dim_are_refused(
    tensors: dict[str, torch.Tensor],
) -> None:
    with pytest.raises(lk.ConfigError, match="KeyedTensorDataset"):
        KeyedTensorDataset(**tensors)
