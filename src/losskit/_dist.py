"""Ranks, world size and reductions across ``torch.distributed`` processes (private, shared).

Every helper degrades to the single-process answer when no process group exists, so callers
need no branch of their own. Processes must agree on what they reduce: a key logged on one rank
only would pair unrelated numbers or hang the collective (mmdetection#9340). Before reducing,
every rank contributes a checksum of its splits, keys and update counts; when they differ, every
rank learns it from the same collective, gathers the lists and raises
:class:`~losskit.errors.RankMismatchError`.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from losskit.errors import RankMismatchError

Signature = list[tuple[str, list[str], int | None]]
"""Per split with data: its name, its keys (sorted) and its updates (``None``: not compared)."""


_AVAILABLE = dist.is_available()


def initialized() -> bool:
    """Whether a default process group exists."""
    return _AVAILABLE and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if initialized() else 0


def world_size(group: dist.ProcessGroup | None) -> int:
    """How many processes the group holds (1 when not distributed)."""
    return dist.get_world_size(group) if initialized() else 1


def world() -> int:
    """The number of processes in the default group (1 when not distributed)."""
    return world_size(None)


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes files): the process group's rank, or
    ``torchrun``'s ``RANK`` when there is no group (before set-up, or after ``losskit run``
    destroyed the one it created)."""
    if initialized():
        return rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def comm_device(group: dist.ProcessGroup | None, device: torch.device) -> torch.device:
    """Where tensors must be for the group's backend (NCCL reduces CUDA tensors only)."""
    if dist.get_backend(group) == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def check_agreement(
    signature: Signature,
    group: dist.ProcessGroup | None,
    device: torch.device,
    describe: Callable[[Sequence[Signature | None]], str] | None = None,
) -> None:
    """Raise :class:`RankMismatchError` on every rank unless all ranks have this signature
    (``describe`` words the error from every rank's signature; the Tracker's by default)."""
    digest = zlib.crc32(json.dumps(signature).encode())
    probe = torch.tensor([digest, -digest], dtype=torch.int64, device=comm_device(group, device))
    dist.all_reduce(probe, op=dist.ReduceOp.MAX, group=group)
    if int(probe[0]) == -int(probe[1]):
        return
    gathered: list[Signature | None] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, signature, group=group)
    raise RankMismatchError((describe or _describe)(gathered))


def _describe(signatures: Sequence[Signature | None]) -> str:
    lines = [
        "processes logged different splits or keys since the last flush, so their values "
        "cannot be reduced:"
    ]
    for r, sig in enumerate(signatures):
        parts = [
            f"{split!r}: {keys} ({'?' if n is None else n} updates)" for split, keys, n in sig or []
        ]
        lines.append(f"  rank {r}: " + ("; ".join(parts) or "nothing logged"))
    lines.append(
        "Every rank must log the same keys for each split in every interval and, with per-step "
        "points, the same number of updates (use a DistributedSampler). Declare keys a rank may "
        "skip with Tracker(keys=[...]) (they then count with weight 0 there), or pass "
        "points=False when splits have uneven batch counts."
    )
    return "\n".join(lines)


def all_reduce_sum(tensor: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """Sum ``tensor`` over the group (in place where the backend allows) and return it."""
    device = comm_device(group, tensor.device)
    moved = tensor.to(device)
    dist.all_reduce(moved, op=dist.ReduceOp.SUM, group=group)
    return moved if moved.device == tensor.device else moved.to(tensor.device)


def global_mean(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """The mean of ``tensor`` over the group's processes (``tensor`` itself when alone).

    Balancers whose state follows loss values call it on training calls so that every rank
    updates from the same, global values; every rank must make the same calls.
    """
    if not initialized():
        return tensor
    size = dist.get_world_size(group)
    if size == 1:
        return tensor
    return all_reduce_sum(tensor.detach().clone(), group).div_(size)


def keyed_sum(values: Tensor, index: Tensor, present: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Sum per-key values over the ranks when each rank holds its own subset of the keys.

    ``values`` has the positions ``index`` of ``width`` agreed keys on its last dimension, and
    ``present`` says which of them this rank holds (a key it does not adds 0). Returns the
    summed values over all ``width`` keys and how many ranks held each, from one collective.
    """
    shape = (*values.shape[:-1], width)
    held = torch.where(present, values, torch.zeros_like(values))
    full = values.new_zeros(shape).index_copy_(-1, index, held)
    holders = values.new_zeros(width).index_copy_(0, index, present.to(values.dtype))
    summed = all_reduce_sum(torch.cat([full.reshape(-1), holders]), None)
    return summed[:-width].view(shape), summed[-width:]


def flat_all_reduce_mean(tensors: Sequence[Tensor]) -> None:
    """Average tensors in place over the ranks with one collective per dtype and device."""
    if not tensors:
        return
    size = world()
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        flat = all_reduce_sum(flat, None).div_(size)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n
