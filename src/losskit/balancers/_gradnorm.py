"""GradNorm (Chen et al., 2018): learn weights that equalise gradient norms at a shared layer."""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.balancers._protocol import BalancerBase, Capabilities
from losskit.balancers._shared import Shared, _entries, trainable
from losskit.errors import ConfigError

__all__ = ["GradNorm"]


class GradNorm(BalancerBase):
    """GradNorm: per-key weights ``w_k`` trained so the weighted gradient norms at a shared layer
    follow each key's relative training rate.

    On every training call the gradient norm ``n_k = ||grad_W L_k||`` of each weighted term at
    the shared layer ``W`` is computed (one extra backward per key, from the term down to ``W``
    only). With ``G_k = w_k n_k``, its mean ``G``, the inverse training rate
    ``r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0))`` and the target ``G * r_k ** alpha`` held
    constant, the GradNorm loss ``sum_k |G_k - target_k|`` has the gradient
    ``sign(G_k - target_k) * n_k`` in ``w_k``. These are averaged over the calls of an optimizer
    step; :meth:`step` then takes one gradient step of size ``lr`` and renormalises the weights
    of the keys that took part to sum to their number. The model trains on ``sum_k w_k L_k``.

    A key absent from a call (an optional term, a ``keys=`` route) or with nothing to average
    (count 0, an empty mask: reported with weight 0) takes no part in that call: its ``L_k(0)``,
    its pending gradient and its weight stay as they were, and the means above run over the
    keys that take part.

    Args:
        shared: the last shared layer ``W`` (a module or its parameters), as in the paper.
        alpha: the restoring force; 0 equalises the gradient norms, larger values favour keys
            that train slower. The paper uses 0.12 to 3.0, 1.5 for NYUv2.
        lr: the step size of the weight update.

    Example::

        >>> import torch, losskit as lk
        >>> _ = torch.manual_seed(0)
        >>> layer = torch.nn.Linear(2, 2)
        >>> crit = lk.Criterion({
        ...     "a": lk.Term(lambda out, batch: out[:, 0].pow(2).mean()),
        ...     "b": lk.Term(lambda out, batch: 10 * out[:, 1].pow(2).mean()),
        ... }, balancer=lk.balancers.GradNorm(shared=layer, alpha=1.5, lr=0.1))
        >>> res = crit(layer(torch.ones(4, 2)), None)
        >>> res.backward(); crit.step()
        >>> bool(crit.balancer.task_weights[0] > crit.balancer.task_weights[1])
        True
    """

    capabilities = Capabilities(backward_per_key=True, fsdp_safe=False, handles_absence=True)
    task_weights: Tensor
    initial: Tensor
    pending: Tensor
    calls: Tensor

    def __init__(self, shared: Shared, *, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__()
        if lr <= 0:
            raise ConfigError(f"GradNorm: lr must be > 0, got {lr}")
        # A plain list, not a submodule: the model's parameters stay out of the criterion's.
        self._shared = _entries(shared)
        self.alpha = alpha
        self.lr = lr
        for name in ("task_weights", "initial", "pending", "calls"):
            self.register_buffer(name, torch.zeros(0))

    def bind(self, keys: tuple[str, ...]) -> None:
        super().bind(keys)
        n = len(keys)
        self.task_weights = torch.ones(n)
        self.initial = torch.zeros(n)  # L_k(0); 0 until a key's first non-zero value
        self.pending = torch.zeros(n)  # summed weight gradients of this optimizer step
        self.calls = torch.zeros(n)

    def combine(
        self,
        losses: Tensor,
        weights: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if self.task_weights.device != losses.device:
            self.to(losses.device)
        index = self.index(keys, losses.device)
        values = losses * weights
        task = self.task_weights.index_select(0, index).to(values.dtype)
        if present is None:
            present = torch.ones_like(values, dtype=torch.bool)
        else:
            task = task * present.to(task.dtype)
        # No key at all (a rank whose batch lacked them): still in the ranks' reduction.
        if torch.is_grad_enabled() and (values.requires_grad or not keys):
            self._accumulate(values, task, keys, index, present)
        return torch.dot(values, task), task * weights

    def _accumulate(
        self, values: Tensor, task: Tensor, keys: tuple[str, ...], index: Tensor, present: Tensor
    ) -> None:
        params = trainable(self._shared)
        if not params:
            raise ConfigError("GradNorm: every parameter of the shared layer is frozen")
        norms = []
        for k in range(values.numel()):
            if not values[k].requires_grad:
                norms.append(values.new_zeros(()))
                continue
            grads = torch.autograd.grad(values[k], params, retain_graph=True, allow_unused=True)
            squares = [g.pow(2).sum() for g in grads if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares else values.new_zeros(()))
        # Under torch.distributed: the global mean of the terms and of the per-rank norms over
        # every bound key (whichever keys each rank holds), so every rank takes the same step.
        stacked = torch.stack([torch.stack(norms) if norms else values, values]).detach()
        found, found_keys, found_present = self.across_ranks(stacked, keys, present)
        if found_keys != keys:
            index = self.index(found_keys, stacked.device)
            task = self.task_weights.index_select(0, index).to(found.dtype)
            present = found_present if found_present is not None else present
            task = task * present.to(task.dtype)
        norm, current = found.unbind()
        initial = self.initial.index_select(0, index).to(current.dtype)
        initial = torch.where((initial == 0) & (current != 0) & present, current, initial)
        self.initial.index_copy_(0, index, initial.to(self.initial.dtype))
        rate = torch.where(initial != 0, current / initial, torch.ones_like(current))
        # Means over the keys that take part (a count-0 key is out of this call).
        taking = present.to(current.dtype)
        n = taking.sum().clamp(min=1.0)
        relative = rate / ((rate * taking).sum() / n)
        scaled = task * norm
        target = (scaled * taking).sum() / n * relative.pow(self.alpha)
        grad = torch.sign(scaled - target) * norm * taking
        self.pending.index_add_(0, index, grad.to(self.pending.dtype))
        self.calls.index_add_(0, index, taking.to(self.calls.dtype))

    def step(self) -> None:
        took_part = self.calls > 0
        stepped = self.task_weights - self.lr * self.pending / self.calls.clamp(min=1.0)
        stepped = stepped.clamp(min=1e-6)
        count = took_part.sum()
        total = torch.where(took_part, stepped, 0.0).sum().clamp(min=1e-12)
        renormalised = stepped * count / total
        self.task_weights.copy_(torch.where(took_part, renormalised, self.task_weights))
        self.pending.zero_()
        self.calls.zero_()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, lr={self.lr}"
