"""Feature-level aggregation (MGDA-UB, Sener & Koltun 2018, section 3.3): the keys' gradients with
respect to the shared representation, their K x K Gramian, and one backward through the trunk.

Each key's term is backpropagated through its head only, down to the features ``z`` (the trunk's
output): ``g_k = d(s_k L_k)/dz``, with ``s_k`` the key's seed (term weight, accumulation scale,
loss scale). The Gramian ``G = [<g_k, g_l>]`` weighs the keys through an aggregator's Gramian
weighting, and a single ordinary backward then gives the heads their own gradients while a
tensor hook on ``z`` replaces what reaches the trunk by ``sum_k w_k g_k``.

Under ``torch.distributed`` every rank contributes its samples' part of the Gramian. With a per
sample representation and a mean loss, a rank's term is ``(world / N) * sum`` over its samples
(its ``n_r = N / world`` samples, or the criterion's shares ``world * n_r / N``), so the full
batch's Gramian is the ranks' sum divided by ``world ** 2``: one all-reduce of K x K numbers,
after which every rank picks the same weights. DDP then averages the trunk's gradients as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from losskit._dist import all_reduce_sum, world_size

__all__ = ["FeatureGradients", "FeatureRows", "feature_gradients"]


class FeatureRows:
    """Storage for the per-key gradient rows, kept from one call to the next.

    A fresh keys x numel block per call costs its page faults and cold cache lines again each
    step (16 MiB at 16 keys on a 128 x 2048 representation: 4-6 ms of a 110 ms step, measured in
    ``benchmarks/balancing.py --scaling``); the block is reused while the keys, sizes, dtype and
    device fit, and grows when they do not. A call's rows are valid until the next call.

    Example::

        >>> rows = FeatureRows()
        >>> block = rows.block(0, 2, torch.zeros(3))
        >>> block.shape, rows.block(0, 2, torch.zeros(3)).data_ptr() == block.data_ptr()
        (torch.Size([2, 3]), True)
    """

    def __init__(self) -> None:
        self._flat: list[Tensor] = []

    def block(self, index: int, keys: int, feature: Tensor) -> Tensor:
        """A ``keys x feature.numel()`` block for feature tensor number ``index``."""
        need = keys * feature.numel()
        while len(self._flat) <= index:
            self._flat.append(feature.new_empty(0))
        flat = self._flat[index]
        if flat.numel() < need or flat.dtype != feature.dtype or flat.device != feature.device:
            flat = self._flat[index] = feature.new_empty(need)
        return flat[:need].view(keys, feature.numel())

    def __getstate__(self) -> dict[str, Any]:
        # Scratch space: a pickled or deep-copied balancer starts without it.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._flat = []


class FeatureGradients:
    """The per-key gradients with respect to the features and their Gramian over the bound keys.

    ``blocks[f]`` holds, for feature tensor ``f``, one flattened gradient row per key of the
    call; ``gramian`` is over the bound keys (zero rows for keys this call lacks), summed over
    the ranks and scaled to the full batch's.
    """

    def __init__(
        self, blocks: list[Tensor], shapes: list[torch.Size], gramian: Tensor, positions: list[int]
    ) -> None:
        self.blocks = blocks
        self.shapes = shapes
        self.gramian = gramian
        self.positions = positions

    def combined(self, weights: Tensor) -> list[Tensor]:
        """``sum_k weights[position_k] * g_k`` for each feature tensor."""
        picked = weights.index_select(0, torch.tensor(self.positions, device=weights.device))
        return [
            (picked.to(block.dtype) @ block).view(shape)
            for block, shape in zip(self.blocks, self.shapes)
        ]


def feature_gradients(
    tensors: Sequence[Tensor],
    seeds: Sequence[Tensor],
    features: Sequence[Tensor],
    positions: list[int],
    n_bound: int,
    rows: FeatureRows | None = None,
) -> FeatureGradients:
    """Backpropagate each term through its head to ``features`` and form the Gramian.

    ``positions`` are the terms' indices among the ``n_bound`` bound keys. Under several
    processes this is a collective (one all-reduce of ``n_bound ** 2`` numbers): every rank must
    call it. The graph is kept for the one backward that follows. ``rows`` keeps the per-key
    rows' storage from one call to the next (a fresh block per call without it).

    Example::

        >>> import torch
        >>> z = torch.ones(2, requires_grad=True) * 1.0
        >>> a, b = (2 * z).sum(), (z * torch.tensor([1.0, -1.0])).sum()
        >>> one = torch.ones(())
        >>> found = feature_gradients([a, b], [one, one], [z], [0, 1], 2)
        >>> found.gramian
        tensor([[8., 0.],
                [0., 2.]])
    """
    # Each key's gradient is copied into its row as it comes: one keys x numel block at a time.
    rows = FeatureRows() if rows is None else rows
    blocks = [rows.block(i, len(tensors), f) for i, f in enumerate(features)]
    for k, (tensor, seed) in enumerate(zip(tensors, seeds)):
        grads = torch.autograd.grad(
            tensor, list(features), grad_outputs=seed, retain_graph=True, materialize_grads=True
        )
        for block, grad in zip(blocks, grads):
            block[k].copy_(grad.reshape(-1))
    device = seeds[0].device
    local = torch.zeros(len(tensors), len(tensors), device=device)
    for block in blocks:
        as32 = block if block.dtype == torch.float32 else block.float()
        local += as32 @ as32.T
    index = torch.tensor(positions, device=device)
    gramian = torch.zeros(n_bound, n_bound, device=device)
    gramian.index_put_((index.view(-1, 1), index.view(1, -1)), local)
    size = world_size(None)
    if size > 1:
        gramian = all_reduce_sum(gramian, None).div_(size * size)
    return FeatureGradients(blocks, [f.shape for f in features], gramian, positions)
