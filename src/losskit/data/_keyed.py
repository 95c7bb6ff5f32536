"""A dataset of dicts built from named tensors: a keyed ``TensorDataset``."""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.errors import ConfigError

__all__ = ["KeyedTensorDataset"]


class KeyedTensorDataset(torch.utils.data.Dataset[dict[str, Tensor]]):
    """Item ``i`` is ``{name: tensor[i]}`` for every named tensor (all share their first dim).

    Every item has the same keys, so the default ``DataLoader`` collate stacks them into a batch
    dict with those keys and no others: a dataset that does not annotate a target simply has no
    key for it, which is what an optional :class:`~losskit.Term` reads as absent.

    Example::

        >>> ds = KeyedTensorDataset(pixels=torch.zeros(5, 64), label=torch.arange(5))
        >>> len(ds), ds.keys, int(ds[3]["label"])
        (5, ('pixels', 'label'), 3)
        >>> batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
        >>> {k: tuple(v.shape) for k, v in batch.items()}
        {'pixels': (4, 64), 'label': (4,)}
    """

    def __init__(self, **tensors: Tensor) -> None:
        if not tensors:
            raise ConfigError("KeyedTensorDataset needs at least one named tensor, got none")
        sizes = {name: int(t.shape[0]) if t.ndim else None for name, t in tensors.items()}
        if None in sizes.values() or len(set(sizes.values())) != 1:
            raise ConfigError(
                f"KeyedTensorDataset needs tensors with the same first dim (one row per "
                f"sample), got first dims {sizes}; index them to the same samples"
            )
        self.tensors = dict(tensors)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of every item, in the order given."""
        return tuple(self.tensors)

    def __len__(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}

    def __repr__(self) -> str:
        return f"KeyedTensorDataset(keys={list(self.tensors)}, size={len(self)})"
