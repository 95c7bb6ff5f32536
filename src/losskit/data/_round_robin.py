"""Batches from several loaders, taken in turn: one pass over datasets that annotate different
targets, for a criterion whose optional terms train on the batches that carry their labels."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Generic, TypeVar

from losskit.errors import ConfigError

__all__ = ["RoundRobin"]

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """One batch from each loader in turn, until every loader is exhausted.

    Each pass (``iter``) starts every loader afresh, so a shuffling ``DataLoader`` reshuffles
    every epoch, and yields every batch of every loader exactly once. A loader that runs out
    drops out of the turn and the others go on, so the end of a pass over loaders of unequal
    lengths holds only the longer loaders' batches; ``len`` is the sum of the loaders' lengths.

    It is an ordinary iterable: the :class:`~losskit.engine.Trainer` takes it as its training
    data and a hand-written loop iterates it. Under ``torch.distributed`` the Trainer shards
    only a ``DataLoader`` it is given directly: give each loader here a ``DistributedSampler``
    (and call its ``set_epoch``) yourself.

    Example::

        >>> rr = RoundRobin(["a1", "a2", "a3"], ["b1"], ["c1", "c2"])
        >>> list(rr), len(rr)
        (['a1', 'b1', 'c1', 'a2', 'c2', 'a3'], 6)
    """

    def __init__(self, *loaders: Iterable[T]) -> None:
        if not loaders:
            raise ConfigError("RoundRobin needs at least one loader, got none")
        self.loaders = loaders

    def __iter__(self) -> Iterator[T]:
        turn = [iter(loader) for loader in self.loaders]
        while turn:
            going = []
            for iterator in turn:
                try:
                    batch = next(iterator)
                except StopIteration:
                    continue
                going.append(iterator)
                yield batch
            turn = going

    def __len__(self) -> int:
        sized = [loader for loader in self.loaders if isinstance(loader, Sized)]
        if len(sized) < len(self.loaders):
            unsized = [i for i, loader in enumerate(self.loaders) if not isinstance(loader, Sized)]
            raise TypeError(
                f"RoundRobin has no length: loaders at positions {unsized} have none (an "
                "iterable-style dataset?); iterate it without asking for its length"
            )
        return sum(len(loader) for loader in sized)

    def __repr__(self) -> str:
        return f"RoundRobin({', '.join(type(loader).__name__ for loader in self.loaders)})"
