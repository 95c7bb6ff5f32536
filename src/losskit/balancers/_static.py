"""Static balancers: the weighted sum of the terms, or its mean over the enabled terms.

Fixed and scheduled weights live on the terms themselves (``Term(..., weight=0.5)`` or a
:mod:`~losskit.schedules` schedule); every balancer multiplies each term by its weight first.
"""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.balancers._protocol import BalancerBase, Capabilities

__all__ = ["Mean", "Sum"]


class Sum(BalancerBase):
    """The weighted sum of the enabled terms (the default).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1", weight=0.5)},
        ...                     balancer=lk.balancers.Sum())
        >>> crit(torch.zeros(2), torch.ones(2)).total
        tensor(1.5000)
    """

    capabilities = Capabilities(fixed_weights=True)

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]:
        return torch.dot(losses, weights), weights


class Mean(BalancerBase):
    """The weighted sum divided by the number of terms it combines (reported weights include it).

    Over the enabled terms; with ``crit(..., keys=[...])`` (one optimizer's route) over the terms
    of that call.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="mean")
        >>> res = crit(torch.zeros(2), torch.ones(2))
        >>> res.total, res.weights["a"]
        (tensor(1.), tensor(0.5000))
    """

    capabilities = Capabilities(fixed_weights=True)

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]:
        weights = weights / len(keys)
        return torch.dot(losses, weights), weights
