"""Each rank's share of every key's samples, for ranks that hold different labels (private).

Under DDP the gradients of the ranks are averaged. When rank 0 computes ``a + c`` on dataset A
and rank 1 ``b + c`` on dataset B, that average halves ``a`` and ``b`` against one process taking
each key's mean over the samples that carry it. A criterion with optional or sample-weighting
terms therefore scales this rank's term ``k`` by ``world * n_k / sum_r n_k`` (one all-reduce of
the per-key counts over the configured keys, absent = 0): the average of the ranks' gradients
is then the gradient of every key's global mean.

Example::

    >>> import torch
    >>> shares = RankShares(("a", "b"))
    >>> shares.active()  # one process: nothing to share
    False
    >>> samples({"x": torch.zeros(5, 3), "y": torch.zeros(5)})
    5.0
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from losskit import _dist
from losskit.result import Count

__all__ = ["RankShares", "samples", "tensors_in"]


def tensors_in(obj: Any) -> Iterator[Tensor]:
    """The tensors in a (nested) mapping, list or tuple, or the tensor itself."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from tensors_in(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from tensors_in(value)


def samples(batch: Any) -> float:
    """What a term without a count of its own averages over: the batch's samples, the leading
    dimension of its first tensor that has one (1 when none has)."""
    for tensor in tensors_in(batch):
        if tensor.ndim:
            return float(tensor.shape[0])
    return 1.0


def _describe_keys(signatures: Sequence[_dist.Signature | None]) -> str:
    lines = ["the processes' criteria have different term keys, so their terms cannot be reduced:"]
    for r, sig in enumerate(signatures):
        keys = sig[0][1] if sig else []
        lines.append(f"  rank {r}: {keys}")
    lines.append(
        "Every rank must build the same Criterion (the same keys); a term whose labels only "
        "some batches carry is declared Term(..., optional=True) on every rank."
    )
    return "\n".join(lines)


class RankShares:
    """This rank's share of each key's samples, over the criterion's configured ``keys``."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self._agreed = False  # the ranks' keys compared (once, at the first scaled call)
        self._positions: dict[tuple[tuple[str, ...], torch.device], Tensor] = {}

    @staticmethod
    def active() -> bool:
        """Whether this call is scaled: several processes, and gradients enabled."""
        return _dist.initialized() and torch.is_grad_enabled() and _dist.world() > 1

    def of(
        self,
        keys: tuple[str, ...],
        counts: tuple[Count | None, ...] | None,
        batch: Any,
        like: Tensor,
    ) -> Tensor:
        """Per key of ``keys``: ``world * n_r / sum_r n_r`` (0 where no rank has any), from one
        all-reduce over every configured key (a key this rank lacks counts 0); a count that is
        None is the batch's samples. Every rank must call it the same number of times."""
        device = like.device
        if not self._agreed:
            signature: _dist.Signature = [("criterion", list(self.keys), None)]
            _dist.check_agreement(signature, None, device, _describe_keys)
            self._agreed = True
        size = samples(batch)
        own = [
            c.detach().reshape(()).to(device, torch.float32)
            if isinstance(c, Tensor)
            else torch.full((), size, device=device)
            for c in (counts if counts is not None else (None,) * len(keys))
        ]
        index = self._positions.get((keys, device))
        if index is None:
            positions = [self.keys.index(k) for k in keys]
            index = torch.tensor(positions, dtype=torch.long, device=device)
            self._positions[keys, device] = index
        n = torch.stack(own) if own else torch.zeros(0, device=device)
        full = torch.zeros(len(self.keys), device=device).index_copy_(0, index, n)
        total = _dist.all_reduce_sum(full, None).index_select(0, index)
        share = n * float(_dist.world()) / total.clamp(min=torch.finfo(torch.float32).tiny)
        return torch.where(total > 0, share, torch.zeros_like(share))
