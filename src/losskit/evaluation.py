"""Exact dataset means of every loss key, accumulated on the device in chunks.

``evaluate`` runs the model under ``no_grad`` over the data, weighs each batch (or chunk) by its
number of samples, and reads the sums back once at the end: no ``.item()`` per batch, and a short
last batch counts for what it holds, so the result equals the one-batch computation of the
whole dataset for every loss that averages over samples. A key whose
:attr:`~losskit.LossResult.counts` the result reports is weighed by that count instead (the
samples that carried its label), so its mean is over its own samples.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> model = torch.nn.Linear(3, 1)
    >>> crit = lk.Criterion({"mse": lk.Term("mse", target="y")})
    >>> x, y = torch.randn(10, 3), torch.randn(10)
    >>> data = [{"x": x[:4], "y": y[:4]}, {"x": x[4:], "y": y[4:]}]
    >>> means = lk.evaluation.evaluate(model, crit, data, forward=lambda m, b: m(b["x"]).squeeze(1))
    >>> sorted(means)
    ['loss', 'loss/mse', 'weight/mse']
    >>> full = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
    >>> abs(means["loss/mse"] - full.item()) < 1e-6
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from losskit import _dist
from losskit.errors import ConfigError, LossInputError
from losskit.result import LossResult

__all__ = ["evaluate"]

Forward = Callable[[Any, Any], Any]
"""``forward(model, batch) -> outputs``."""


def _default_forward(model: Any, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        raise ConfigError(
            "evaluate: the batch is a mapping, so the model input is not obvious; pass "
            "forward=lambda model, batch: model(batch['x']) (or your own)"
        )
    if isinstance(batch, (list, tuple)):
        return model(batch[0])
    return model(batch)


def to_device(batch: Any, device: torch.device | None) -> Any:
    """``batch`` (tensors in mappings, lists, tuples) moved to ``device`` (``None``: as is)."""
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _leading(batch: Any) -> int | None:
    """The batch's sample count: the first dim of its first tensor with one."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else None
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
        for value in values:
            found = _leading(value)
            if found is not None:
                return found
    return None


def _slice(batch: Any, start: int, stop: int, n: int) -> Any:
    if isinstance(batch, Tensor):
        return batch[start:stop] if batch.ndim and batch.shape[0] == n else batch
    if isinstance(batch, Mapping):
        return {k: _slice(v, start, stop, n) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(v, start, stop, n) for v in batch)
    return batch


def _chunks(batch: Any, n: int, chunk_size: int | None) -> Iterator[tuple[Any, int]]:
    if chunk_size is None or n <= chunk_size:
        yield batch, n
        return
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        # Views along dim 0: no copy of the data.
        yield _slice(batch, start, stop, n), stop - start


def _values(result: Any) -> tuple[Mapping[str, Tensor], dict[str, Tensor]]:
    """The logged values and, by logged name, the count that weighs a value (where known)."""
    if isinstance(result, LossResult):
        return result.log(), {f"loss/{k}": c for k, c in result.counts.items()}
    if isinstance(result, Mapping):
        return result, {}
    raise ConfigError(
        "evaluate: the criterion returned a "
        f"{type(result).__name__}; expected a LossResult or a mapping of scalar tensors"
    )


@torch.no_grad()
def evaluate(
    model: nn.Module | Callable[..., Any],
    criterion: Callable[[Any, Any], LossResult | Mapping[str, Tensor]],
    data: Iterable[Any],
    chunk_size: int | None = None,
    forward: Forward | None = None,
    device: torch.device | str | None = None,
    *,
    sync: bool = True,
) -> dict[str, float]:
    """Every logged key's dataset mean over ``data``, weighted by samples, under ``no_grad``.

    Args:
        model: the model; an ``nn.Module`` is put in eval mode and restored afterwards.
        criterion: a :class:`~losskit.Criterion` (its ``res.log()`` names: ``loss``,
            ``loss/<key>``, ``weight/<key>``) or any ``fn(outputs, batch)`` returning a
            :class:`~losskit.LossResult` or a mapping of scalar tensors.
        data: an iterable of batches (a ``DataLoader``, a list): tensors, tuples or mappings
            whose tensors share the sample dim 0.
        chunk_size: split each batch into chunks of at most this many samples (views along
            dim 0), to bound the memory of one forward pass; the last chunk may be shorter and is
            weighted by its size.
        forward: ``forward(model, batch) -> outputs``; by default ``model(batch)`` for a tensor
            and ``model(batch[0])`` for a tuple.
        device: moves each batch there first.
        sync: under ``torch.distributed``, reduce over all ranks (every rank must call
            ``evaluate``); ``False`` for an evaluation on one rank only.

    Returns:
        ``{name: mean}`` over all samples, read from the device once. A batch's weight is its
        sample count (dim 0), so a loss averaged over other units (valid tokens of a mask) is
        the sample-weighted mean of its per-batch values, unless the result reports that key's
        count (:attr:`~losskit.LossResult.counts`): ``loss/<key>`` is then weighed by it, and a
        key counted 0 times over the whole data (no sample carried its label) is left out.
        Under ``torch.distributed`` every rank gets the means over all ranks' samples (one
        all-reduce of the sums and counts; ranks whose names differ raise
        :class:`~losskit.errors.RankMismatchError` instead of hanging). The means are exact over
        the samples the ranks were given: a ``DistributedSampler`` (as the Trainer uses under
        DDP) pads a dataset whose size the world size does not divide by repeating a few
        samples, and those count twice.

    Example::

        >>> import torch
        >>> import losskit as lk
        >>> crit = lk.Criterion({"ce": lk.Term("cross_entropy", target=1)})
        >>> x, y = torch.randn(7, 4), torch.randint(0, 4, (7,))
        >>> means = lk.evaluation.evaluate(torch.nn.Identity(), crit, [(x, y)], chunk_size=3)
        >>> abs(means["loss/ce"] - torch.nn.functional.cross_entropy(x, y).item()) < 1e-6
        True
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise ConfigError(f"evaluate: chunk_size must be a positive integer, got {chunk_size!r}")
    run = forward if forward is not None else _default_forward
    target_device = torch.device(device) if device is not None else None
    sums: dict[str, Tensor] = {}
    counts: dict[str, Tensor | int] = {}
    was_training = model.training if isinstance(model, nn.Module) else None
    if isinstance(model, nn.Module):
        model.eval()
    try:
        for raw in data:
            batch = to_device(raw, target_device)
            n = _leading(batch)
            if n is None:
                raise LossInputError(
                    "evaluate: a batch holds no tensor with a sample dim (dim 0), so it cannot "
                    f"be weighted; got a {type(batch).__name__}"
                )
            for chunk, size in _chunks(batch, n, chunk_size):
                values, weights = _values(criterion(run(model, chunk), chunk))
                for name, value in values.items():
                    v = value.detach() if isinstance(value, Tensor) else torch.tensor(value)
                    if v.numel() != 1:
                        raise LossInputError(
                            f"evaluate: {name!r} has shape {tuple(v.shape)}, expected a scalar"
                        )
                    # float64 sums: exact enough over millions of samples (MPS has no float64).
                    acc = torch.float64 if v.device.type != "mps" else torch.float32
                    v = v.reshape(()).to(acc)
                    w: Tensor | int = size
                    if name in weights:
                        w = weights[name].detach().reshape(()).to(v.device, acc)
                        v = v.where(w > 0, 0.0)  # no sample: the value stands for nothing
                    sums[name] = sums[name] + v * w if name in sums else v * w
                    counts[name] = counts[name] + w if name in counts else w
    finally:
        if isinstance(model, nn.Module) and was_training is not None:
            model.train(was_training)
    if sync and _dist.initialized():
        return _reduce_across_ranks(sums, counts, target_device)
    if not sums:
        return {}
    names = list(sums)
    where = sums[names[0]].device
    return _means(names, _pack(names, sums, counts, where, sums[names[0]].dtype))


def _pack(
    names: list[str],
    sums: Mapping[str, Tensor],
    counts: Mapping[str, Tensor | int],
    where: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """The sums of ``names``, then their counts, as one vector on ``where``."""
    if not names:
        return torch.zeros(0, dtype=dtype, device=where)
    weights = [
        c.to(where, dtype) if isinstance(c, Tensor) else torch.tensor(c, dtype=dtype, device=where)
        for c in (counts[k] for k in names)
    ]
    return torch.stack([sums[k].to(where, dtype) for k in names] + weights)


def _means(names: list[str], packed: Tensor) -> dict[str, float]:
    """``{name: sum / count}`` from :func:`_pack`'s vector (the one host sync); a name counted
    0 times has no mean and is left out."""
    totals = packed.tolist()
    k = len(names)
    return {name: totals[i] / totals[k + i] for i, name in enumerate(names) if totals[k + i] > 0}


def _reduce_across_ranks(
    sums: dict[str, Tensor], counts: dict[str, Tensor | int], device: torch.device | None
) -> dict[str, float]:
    """Every rank gets the means over all ranks' samples; ranks must agree on the names."""
    names = sorted(sums)
    where = next(iter(sums.values())).device if sums else (device or torch.device("cpu"))
    where = _dist.comm_device(None, where)
    # Differing names would pair unrelated numbers or hang the collective: refuse them first.
    _dist.check_agreement([("evaluate", names, None)], None, where)
    packed = _pack(names, sums, counts, where, torch.float64)
    dist.all_reduce(packed)
    return _means(names, packed)
