"""Per-key gradients: their norms and the cosine (conflict) matrix, for any training loop.

Each key's gradient is one extra ``torch.autograd.grad`` through the retained graph. Measured
on the demo model, that loop costs less than one batched (``is_grads_batched``, vmap) backward
of all keys and far less than torchjd's Gramian engine, whose module hooks also slow every
ordinary step (figures in ``docs/benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from losskit.result import LossResult

__all__ = ["gradient_health", "key_gradients"]

_EPS = 1e-12


def _trainable(params: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    found = params.parameters() if isinstance(params, nn.Module) else params
    seen: set[int] = set()
    out: list[Tensor] = []
    for p in found:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def key_gradients(
    parts: Sequence[Tensor], params: Sequence[Tensor]
) -> list[tuple[Tensor | None, ...]]:
    """The gradient of each of ``parts`` with respect to ``params``, keeping the graph.

    ``None`` marks a parameter that a part does not reach (and every parameter of a part with
    no graph at all).

    Example::

        >>> w = torch.ones(2, requires_grad=True)
        >>> v = torch.zeros(1, requires_grad=True)
        >>> key_gradients([(3 * w).sum(), (w * v).sum()], [w, v])
        [(tensor([3., 3.]), None), (tensor([0., 0.]), tensor([2.]))]
    """
    grads: list[tuple[Tensor | None, ...]] = []
    for part in parts:
        if not part.requires_grad:
            grads.append((None,) * len(params))
            continue
        grads.append(torch.autograd.grad(part, params, retain_graph=True, allow_unused=True))
    return grads


def _shared(grads: Sequence[tuple[Tensor | None, ...]], n_params: int) -> list[int]:
    """Indices of the parameters two keys or more reach (all reached ones if none is shared)."""
    counts = [sum(g[i] is not None for g in grads) for i in range(n_params)]
    shared = [i for i, c in enumerate(counts) if c >= 2]
    return shared or [i for i, c in enumerate(counts) if c >= 1]


def _flat(
    grad: tuple[Tensor | None, ...], params: Sequence[Tensor], index: Sequence[int]
) -> Tensor:
    pieces = [
        (grad[i] if grad[i] is not None else torch.zeros_like(params[i])).reshape(-1)  # type: ignore[union-attr]
        for i in index
    ]
    return torch.cat(pieces).float()


def gram_matrix(
    grads: Sequence[tuple[Tensor | None, ...]], params: Sequence[Tensor], index: Sequence[int]
) -> Tensor:
    """``G @ G.T`` of the keys' gradients flattened over the parameters ``index`` selects."""
    matrix = torch.stack([_flat(g, params, index) for g in grads])
    return matrix @ matrix.T


def cosines(gram: Tensor) -> Tensor:
    """The cosine matrix from a Gram matrix (0 where a gradient is zero)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp_min(_EPS)


def gradient_health(
    params: nn.Module | Iterable[Tensor],
    result: LossResult,
    *,
    shared: nn.Module | Iterable[Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-key gradient norms and pairwise gradient cosines on the shared parameters.

    Call it after the forward pass and before ``result.backward()`` (it keeps the graph). The
    values are detached 0-dim tensors, computed without a host synchronisation, under the
    names the report draws: ``grad_norm/<key>`` is the norm of the gradient of
    ``weight × term`` (the key's pull on the update) and ``cos/<a>/<b>`` the cosine between
    the two terms' gradients (negative: they conflict). Pass them to
    ``tracker.update(res, extra=...)``.

    Args:
        params: the model (its trainable parameters) or the parameters to look at.
        result: this step's :class:`~losskit.LossResult`.
        shared: the shared part (a module or parameters); by default the parameters that two
            keys or more reach (every reached one when no parameter is shared).

    Each key costs one extra backward pass through the graph: call it every N steps
    (``Trainer(diagnostics_every=N)``), not every step.

    Example::

        >>> import torch, losskit as lk
        >>> _ = torch.manual_seed(0)
        >>> trunk, head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)
        >>> model = torch.nn.ModuleList([trunk, head])
        >>> crit = lk.Criterion({"a": lk.Term(lambda out, b: out["a"].mean()),
        ...                      "b": lk.Term(lambda out, b: -out["a"].mean(), weight=2.0)})
        >>> h = trunk(torch.randn(16, 4))
        >>> res = crit({"a": head(h)}, None)
        >>> health = lk.diagnostics.gradient_health(model, res)
        >>> sorted(health)
        ['cos/a/b', 'grad_norm/a', 'grad_norm/b']
        >>> round(health["cos/a/b"].item(), 4)  # opposed gradients
        -1.0
        >>> torch.allclose(health["grad_norm/b"], 2 * health["grad_norm/a"])
        True
    """
    keys = result.keys()
    chosen = _trainable(shared if shared is not None else params)
    grads = key_gradients([result[k] for k in keys], chosen)
    index = list(range(len(chosen))) if shared is not None else _shared(grads, len(chosen))
    out: dict[str, Tensor] = {}
    if not index:
        zero = torch.zeros((), device=result.total.device)
        return {f"grad_norm/{k}": zero for k in keys}
    gram = gram_matrix(grads, chosen, index).detach()
    norms = gram.diagonal().clamp_min(0).sqrt()
    weights = result.weights
    for i, key in enumerate(keys):
        out[f"grad_norm/{key}"] = norms[i] * weights[key].to(norms.dtype).abs()
    cos = cosines(gram)
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            out[f"cos/{a}/{keys[j]}"] = cos[i, j]
    return out
