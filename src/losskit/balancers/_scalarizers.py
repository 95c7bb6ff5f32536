"""Loss-level adaptive balancers: thin keyed adapters over ``torchjd.scalarization``.

Each adapter builds the torchjd scalarizer for the criterion's keys, feeds it the weighted terms
and reports, per key, the derivative of the total with respect to that term at the current values
(for a linear scalarizer, its weight). The model's gradient is exactly the one of the scalarizer's
output; the scalarizer's own parameters (uncertainty weighting's log-variances, ...) get theirs
too.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from losskit._lazy import LazyModule
from losskit.balancers._protocol import BalancerBase, Capabilities
from losskit.errors import ConfigError, LossKitWarning

if TYPE_CHECKING:
    from torchjd import scalarization

    from losskit.result import LossResult
else:
    scalarization = LazyModule("torchjd.scalarization")


__all__ = ["DWA", "FAMO", "IMTLL", "STCH", "GeometricMean", "RandomWeights", "Uncertainty"]

_STALE_STEPS = 10  # optimizer steps with gradients but no change before we say so


class _Scalarized(BalancerBase):
    """A torchjd scalarizer behind the balancer protocol.

    Subclasses build the scalarizer in ``_make``. ``per_key`` names its parameters and buffers
    that hold one entry per key: a call on a subset of the keys (a term disabled at run time, a
    ``keys=`` route, an optional term absent from the batch) uses those entries only, so the
    other keys' entries get no gradient and stay as they were. ``historical`` scalarizers learn
    their weights from the terms of training calls (DWA, FAMO); validation reuses the last
    training weights instead of feeding the history.

    A subclass that declares ``handles_absence`` is given ``present`` (False for a key with
    nothing to average this call, whose value is 0) and combines the call as if those keys were
    absent: by default (``_scalarize``) their ``per_key`` entries are replaced by 0 for the call,
    which takes them out of the total exactly for a scalarizer whose every key adds a summand
    that vanishes at a zero value and zero parameters (uncertainty weighting, IMTL-L).
    """

    per_key: ClassVar[tuple[str, ...]] = ()
    historical: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.scalarizer: nn.Module | None = None
        self._device = torch.device("cpu")
        # historical: per key, the last training weights (the slopes), for validation
        self._last: Tensor | None = None
        # per learnable parameter: its value at the last step and the steps it stayed there
        self._unchanged: dict[str, tuple[Tensor, int]] = {}
        self._moving: set[str] = set()  # seen to change: an optimizer steps it
        self._warned = False

    def _make(self, n: int) -> nn.Module:
        raise NotImplementedError

    def bind(self, keys: tuple[str, ...]) -> None:
        super().bind(keys)
        self.scalarizer = self._make(len(keys))

    def _scalarize(self, values: Tensor, keys: tuple[str, ...], present: Tensor | None) -> Tensor:
        assert self.scalarizer is not None, "bind() the balancer first"
        if keys == self.keys and present is None:
            whole: Tensor = self.scalarizer(values)
            return whole
        replaced = {}
        for name in self.per_key:
            tensor = getattr(self.scalarizer, name, None)
            if not isinstance(tensor, Tensor):
                continue
            if keys != self.keys:
                tensor = tensor.index_select(0, self.index(keys, values.device))
            if present is not None:
                tensor = torch.where(present, tensor, torch.zeros_like(tensor))
            replaced[name] = tensor
        if not replaced:
            plain: Tensor = self.scalarizer(values)
            return plain
        out: Tensor = torch.func.functional_call(self.scalarizer, replaced, (values,))
        return out

    def combine(
        self,
        losses: Tensor,
        weights: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if self._device != losses.device:
            self.to(losses.device)
            self._device = losses.device
        values = losses * weights  # a term weight scales its term before balancing
        if present is not None:  # a key with nothing to average is out of this call
            values = torch.where(present, values, torch.zeros_like(values))
        training = torch.is_grad_enabled()
        if self.historical and not training:
            # Validation must not feed the history: reuse the last training weights.
            last = self._last if self._last is not None else torch.ones(len(self.keys))
            last = last.to(values.device)
            if keys != self.keys:
                last = last.index_select(0, self.index(keys, values.device))
            if present is not None:
                last = last * present.to(last.dtype)
            return torch.dot(values, last.to(values.dtype)), last * weights
        # Under torch.distributed the state (DWA's history, ...) and the weights follow the
        # global mean of every bound key (whichever keys each rank holds), so every rank
        # applies the same weights and updates the same state.
        seen, seen_keys, seen_present = values.detach(), keys, present
        if training:
            seen, seen_keys, seen_present = self.across_ranks(seen, keys, present)
        leaf = seen.detach().requires_grad_(True)
        with torch.enable_grad():
            scalar = self._scalarize(leaf, seen_keys, seen_present)
            (slopes,) = torch.autograd.grad(scalar, leaf, retain_graph=training)
        slope, own = slopes, leaf.detach()
        if seen_keys != keys:  # every bound key: this call's among them
            index = self.index(keys, slopes.device)
            slope, own = slopes.index_select(0, index), own.index_select(0, index)
        if present is not None:
            slope = slope * present.to(slope.dtype)
        if training and self.historical:
            self._remember(slopes.detach(), seen_keys, seen_present)
        learnable = any(p.requires_grad for p in self.parameters())
        if not training or not (values.requires_grad or learnable):
            return scalar.detach(), slope * weights
        # The value is the scalarizer's; the model's gradient flows through `values` with the
        # slope as weights, the scalarizer's parameters' gradient through `scalar`.
        return scalar + torch.dot(slope, values - own), slope * weights

    def _remember(self, slope: Tensor, keys: tuple[str, ...], present: Tensor | None) -> None:
        """Keep the weights of the keys that took part; the others' stay as they were."""
        index = self.index(keys, slope.device)
        last = self._last
        if last is None or last.device != slope.device:
            last = torch.ones(len(self.keys), device=slope.device, dtype=slope.dtype)
            if self._last is not None:
                last.copy_(self._last)
        else:
            last = last.clone()
        if present is not None:
            slope = torch.where(present, slope, last.index_select(0, index))
        self._last = last.index_copy_(0, index, slope.to(last.dtype))

    def step(self) -> None:
        if self.scalarizer is None or self._warned:
            return
        for name, param in self.scalarizer.named_parameters():
            if param.grad is None or name in self._moving:
                continue
            # A host sync per step, only until the parameter is first seen to move.
            value = param.detach()
            before = self._unchanged.get(name)
            if before is not None and not torch.equal(before[0], value):
                self._moving.add(name)
                self._unchanged.pop(name)
                continue
            stale = 0 if before is None else before[1] + 1
            self._unchanged[name] = (value.clone(), stale)
            if stale >= _STALE_STEPS:
                self._warned = True
                warnings.warn(
                    f"{type(self).__name__}: its learnable '{name}' received gradients but has not "
                    f"changed for {_STALE_STEPS} optimizer steps; pass the criterion's parameters "
                    "to an optimizer, e.g. torch.optim.Adam([*model.parameters(), "
                    "*criterion.parameters()])",
                    LossKitWarning,
                    stacklevel=3,
                )
                return

    def extra_repr(self) -> str:
        return repr(self.scalarizer) if self.scalarizer is not None else ""


def _per_key_tensor(
    cls: str, name: str, values: Mapping[str, float] | None, keys: tuple[str, ...], default: float
) -> Tensor | None:
    if values is None:
        return None
    unknown = set(values) - set(keys)
    if unknown:
        raise ConfigError(f"{cls}: {name} names keys {sorted(unknown)} the criterion lacks")
    return torch.tensor([float(values.get(k, default)) for k in keys])


class Uncertainty(_Scalarized):
    """Uncertainty weighting (Kendall et al., 2018): a learned log-variance per key.

    The total is ``sum_k 0.5 * exp(-s_k) * L_k + 0.5 * s_k`` (torchjd's ``UW``); the ``s_k`` are
    parameters of the criterion, so give ``criterion.parameters()`` to an optimizer (a warning
    says so after some steps without it). Reported weights are ``0.5 * exp(-s_k)``.

    A key absent from a call, or with nothing to average (count 0), leaves its summand out of
    the total (regulariser included): its ``s_k`` gets no gradient from that call.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="uncertainty")
        >>> res = crit(torch.zeros(2), torch.ones(2))
        >>> float(res.total.detach()), res.weights["a"], [n for n, _ in crit.named_parameters()]
        (1.0, tensor(0.5000), ['balancer.scalarizer.log_var'])
    """

    capabilities = Capabilities(handles_absence=True)
    per_key: ClassVar[tuple[str, ...]] = ("log_var",)

    def _make(self, n: int) -> scalarization.Scalarizer:
        return scalarization.UW(n)


class IMTLL(_Scalarized):
    """IMTL-L (Liu et al., 2021): a learned log-scale per key, ``sum_k exp(s_k) L_k - s_k``.

    Like :class:`Uncertainty`, its parameters belong in an optimizer, and a key absent from a
    call or with nothing to average (count 0) leaves its summand out of the total.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="imtl_l")
        >>> crit(torch.zeros(2), torch.ones(2)).weights["b"]
        tensor(1.)
    """

    capabilities = Capabilities(handles_absence=True)
    per_key: ClassVar[tuple[str, ...]] = ("log_scale",)

    def _make(self, n: int) -> scalarization.Scalarizer:
        return scalarization.IMTLL(n)


@functools.cache
def _sync_free_geometric_mean() -> type[scalarization.Scalarizer]:
    """torchjd's geometric mean without its sign check, which waits on the host every call."""

    class _SyncFreeGeometricMean(scalarization.GeometricMean):
        def forward(self, values: Tensor, /) -> Tensor:
            return torch.exp(torch.log(values).mean())

    _SyncFreeGeometricMean.__qualname__ = "_SyncFreeGeometricMean"  # pickled by name: found
    _SyncFreeGeometricMean.__module__ = __name__  # by the module's __getattr__
    return _SyncFreeGeometricMean


def __getattr__(name: str) -> Any:
    if name == "_SyncFreeGeometricMean":  # unpickling a geometric mean balancer
        return _sync_free_geometric_mean()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GeometricMean(_Scalarized):
    """The geometric mean of the terms (GLS, Chennupati et al., 2019).

    Its slope ``total / (n * L_k)`` gives small terms large weights. The terms must be positive:
    a negative or zero term makes the total NaN or zero, which the criterion's non-finite check
    reports by key (torchjd's own sign check would wait on the host every step).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")},
        ...                     balancer="geometric_mean")
        >>> res = crit(torch.zeros(2), torch.tensor([4.0, 4.0]))
        >>> float(res.total), res.weights["a"]
        (8.0, tensor(0.2500))
    """

    def _make(self, n: int) -> scalarization.Scalarizer:
        return _sync_free_geometric_mean()()


class RandomWeights(_Scalarized):
    """Random loss weighting (Lin et al., 2022): fresh softmax-of-normal weights every call.

    Draws from torch's global generator, so ``seed_everything`` makes runs repeatable.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="random")
        >>> res = crit(torch.zeros(2), torch.ones(2))
        >>> round(float(res.weights["a"] + res.weights["b"]), 6)
        1.0
    """

    capabilities = Capabilities(rank_consistent=False, random_draws=True)

    def _make(self, n: int) -> scalarization.Scalarizer:
        return scalarization.Random()


class STCH(_Scalarized):
    """Smooth Tchebycheff scalarisation (Lin et al., 2024): ``mu logsumexp(p_k (L_k - z_k) / mu)``.

    Args:
        mu: the smoothing; smaller is closer to the maximum of the weighted terms.
        preference: per-key preference ``p_k`` (default: uniform ``1/n``).
        reference: per-key ideal point ``z_k`` (default: none).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")},
        ...                     balancer={"name": "stch", "mu": 0.01})
        >>> res = crit(torch.zeros(2), torch.tensor([1.0, 3.0]))  # mse 5, l1 2
        >>> [round(float(res.weights[k]), 3) for k in ("a", "b")]
        [0.5, 0.0]
    """

    per_key: ClassVar[tuple[str, ...]] = ("weights", "reference")

    def __init__(
        self,
        mu: float,
        *,
        preference: Mapping[str, float] | None = None,
        reference: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if mu <= 0:
            raise ConfigError(f"STCH: mu must be > 0, got {mu}")
        self.mu = mu
        self.preference = dict(preference) if preference is not None else None
        self.reference = dict(reference) if reference is not None else None

    def _make(self, n: int) -> scalarization.Scalarizer:
        stch = scalarization.STCH(self.mu)
        for name, given, default in (
            ("weights", self.preference, 0.0),
            ("reference", self.reference, 0.0),
        ):
            tensor = _per_key_tensor("STCH", name, given, self.keys, default)
            # Buffers rather than plain attributes: they follow .to() and key subsets.
            delattr(stch, name)
            stch.register_buffer(name, tensor)
        return stch


class DWA(_Scalarized):
    """Dynamic Weight Average (Liu et al., 2019): weights from each key's recent rate of decrease.

    Args:
        every: optimizer steps per period (the paper's epoch); the history rolls every ``every``
            calls of ``Criterion.step()``.
        temperature: larger values make the weights more uniform.

    The weights of a call are ``K * softmax(r / T)`` over its ``K`` keys, with ``r_k`` the ratio
    of key ``k``'s last two period averages (torchjd's ``DWA``, whose formula this follows). They
    stay uniform until every key of the call has two period averages.

    The history is kept per key, so a call on some of the keys (an optional term absent from
    the batch, a term with nothing to average, a disabled term, a ``keys=`` route) is weighted
    over those keys and feeds only their averages. A period average is over the calls a key
    took part in; a key that took part in no call of a period keeps its last two averages (its
    rate is held, not decayed).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")},
        ...                     balancer={"name": "dwa", "every": 1})
        >>> for target in (4.0, 2.0, 1.0):  # "a" falls 4x per step, "b" 2x
        ...     res = crit(torch.zeros(2), torch.full((2,), target))
        ...     crit.step()
        >>> [round(float(res.weights[k]), 3) for k in ("a", "b")]
        [0.938, 1.062]
    """

    capabilities = Capabilities(handles_absence=True)
    historical: ClassVar[bool] = True
    loss_sum: Tensor
    calls: Tensor
    averages: Tensor
    periods: Tensor

    def __init__(self, every: int, temperature: float = 2.0) -> None:
        super().__init__()
        if every < 1:
            raise ConfigError(f"DWA: every must be >= 1 optimizer step, got {every}")
        if temperature <= 0:
            raise ConfigError(f"DWA: temperature must be > 0, got {temperature}")
        self.every = every
        self.temperature = temperature
        self._steps = 0
        for name in ("loss_sum", "calls", "averages", "periods"):
            self.register_buffer(name, torch.zeros(0))

    def _make(self, n: int) -> scalarization.Scalarizer:
        return scalarization.DWA(self.temperature)  # its repr; the history is kept per key here

    def bind(self, keys: tuple[str, ...]) -> None:
        super().bind(keys)
        n = len(keys)
        self.loss_sum = torch.zeros(n)  # this period: the summed terms of the calls taken part in
        self.calls = torch.zeros(n)  # this period: the calls taken part in
        self.averages = torch.zeros(2, n)  # the last two period averages, older first
        self.periods = torch.zeros(n)  # period averages held (at most 2)

    def _scalarize(self, values: Tensor, keys: tuple[str, ...], present: Tensor | None) -> Tensor:
        index = self.index(keys, values.device)
        taking = torch.ones_like(values) if present is None else present.to(values.dtype)
        averages = self.averages.index_select(1, index).to(values.dtype)
        ready = (self.periods.index_select(0, index) >= 2) | (taking == 0)
        logits = torch.where(taking > 0, averages[1] / averages[0] / self.temperature, -torch.inf)
        # A key out of the call has logit -inf (weight 0); the max keeps softmax finite even
        # when every key is out (then every weight is 0).
        logits = logits - logits.max().clamp(min=torch.finfo(values.dtype).min)
        dynamic = taking.sum() * torch.softmax(logits.nan_to_num(nan=-torch.inf), dim=0)
        weights = torch.where(ready.all(), dynamic, taking)
        detached = values.detach()
        self.loss_sum.index_add_(0, index, (detached * taking).to(self.loss_sum.dtype))
        self.calls.index_add_(0, index, taking.to(self.calls.dtype))
        return (weights.detach() * values).sum()

    def step(self) -> None:
        self._steps += 1
        if self._steps % self.every == 0:
            took_part = self.calls > 0
            average = self.loss_sum / self.calls.clamp(min=1.0)
            rolled = torch.stack([self.averages[1], average])
            self.averages.copy_(torch.where(took_part, rolled, self.averages))
            self.periods.add_(took_part.to(self.periods.dtype)).clamp_(max=2.0)
            self.loss_sum.zero_()
            self.calls.zero_()

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps": self._steps, "last": self._last}

    def set_extra_state(self, state: Any) -> None:
        self._steps = int(state["steps"])
        self._last = state["last"]


_FAMO_EPSILON = 1e-8  # torchjd's FAMO: added to every shifted term before its logarithm


class _FamoState(nn.Module):
    """FAMO's learned weight logits (one per key, from 0) and the terms' lower bounds; the Adam
    that steps the logits is FAMO's own (never a user's optimizer: their gradient is cleared)."""

    min_losses: Tensor

    def __init__(self, floor: Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(floor.shape[0]))
        self.register_buffer("min_losses", floor)
        self.optimizer: torch.optim.Adam | None = None

    def extra_repr(self) -> str:
        return f"keys={self.logits.shape[0]}"


class FAMO(_Scalarized):
    """FAMO (Liu et al., 2023): decrease every term at about the same rate, from loss values only.

    FAMO learns its weights from how much each term fell across an optimizer step, so after the
    step call :meth:`update` with the criterion's result recomputed on the same batch::

        res = crit(model(x), batch); res.backward(); opt.step(); crit.step()
        with torch.no_grad():
            crit.balancer.update(crit(model(x), batch))

    The :class:`~losskit.Trainer` (so ``losskit run``, ``compare`` and ``tune``) does this after
    every optimizer step, on the window's last micro-batch (FAMO declares
    ``Capabilities(learns_after_step=True)``); a hand-written loop calls it itself. Without
    :meth:`update` the weights never move; a warning says so at the first training call after an
    optimizer step that had none.

    Args:
        lr: the learning rate of FAMO's internal Adam on its weight logits.
        weight_decay: the weight decay of that Adam.
        min_losses: per-key lower bound ``b_k`` (terms must stay above it; default 0).

    The total and the update are torchjd's ``FAMO``, over the keys of the call: a key absent
    from the batch (or with nothing to average, count 0) is left out of the softmax of the
    logits, and :meth:`update` learns from the keys present both in the training call and in
    the recomputed one. The other keys' logits and Adam moments are held as they were (Adam's
    shared step count still advances, so their bias correction moves on).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="famo")
        >>> res = crit(torch.zeros(2), torch.full((2,), 2.0))  # mse 4, l1 2
        >>> [round(float(res.weights[k]), 3) for k in ("a", "b")]
        [0.333, 0.667]
    """

    capabilities = Capabilities(handles_absence=True, learns_after_step=True)
    historical: ClassVar[bool] = True
    per_key: ClassVar[tuple[str, ...]] = ("logits", "min_losses")

    def __init__(
        self,
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        *,
        min_losses: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.weight_decay = weight_decay
        self.min_losses = dict(min_losses) if min_losses is not None else None
        self._base: Tensor | None = None  # per key: the term weights of its last training call
        self._before: Tensor | None = None  # per key: its weighted term in that call
        self._seen: Tensor | None = None  # per key: in the last training call, with a count
        self._pending = False  # a training call not yet followed by update()
        self._stepped = False  # an optimizer step since that call
        self._update_warned = False

    def _make(self, n: int) -> _FamoState:
        floor = _per_key_tensor("FAMO", "min_losses", self.min_losses, self.keys, 0.0)
        if floor is None:
            floor = torch.zeros(n)
        if self.lr < 0 or self.weight_decay < 0:
            raise ConfigError(
                f"FAMO: lr and weight_decay must be >= 0, got {self.lr} and {self.weight_decay}"
            )
        return _FamoState(floor)

    def _famo(self) -> _FamoState:
        assert isinstance(self.scalarizer, _FamoState), "bind() the balancer first"
        return self.scalarizer

    def _per_key(self, known: Tensor | None, fill: float, like: Tensor) -> Tensor:
        n = len(self.keys)
        if known is None:
            return torch.full((n,), fill, device=like.device, dtype=like.dtype)
        return known.to(like.device, like.dtype).clone()

    def _scalarize(self, values: Tensor, keys: tuple[str, ...], present: Tensor | None) -> Tensor:
        famo = self._famo()
        index = self.index(keys, values.device)
        taking = torch.ones_like(values, dtype=torch.bool) if present is None else present
        logits = famo.logits.detach().index_select(0, index)
        # torchjd's forward, over the keys taking part (the others: weight 0, log 1 = 0).
        z = torch.softmax(torch.where(taking, logits, -torch.inf), dim=0)
        z = torch.where(taking, z, torch.zeros_like(z))  # every key out: 0, not NaN
        floor = famo.min_losses.index_select(0, index).to(values.dtype)
        shifted = torch.where(taking, values - floor + _FAMO_EPSILON, torch.ones_like(values))
        normalizer = (z / shifted).sum().detach()
        # Remember the terms of this call for update(), per key.
        before = self._per_key(self._before, 0.0, values)
        held = torch.where(taking, values.detach(), before.index_select(0, index))
        self._before = before.index_copy_(0, index, held)
        seen = torch.zeros(len(self.keys), dtype=torch.bool, device=values.device)
        self._seen = seen.index_copy_(0, index, taking)
        return ((z / normalizer) * torch.log(shifted)).sum()

    def combine(
        self,
        losses: Tensor,
        weights: Tensor,
        keys: tuple[str, ...],
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled():
            if self._stepped and self._pending and not self._update_warned:
                self._update_warned = True
                warnings.warn(
                    "FAMO: an optimizer step passed without FAMO.update(...); its weights only "
                    "learn from the terms recomputed on the same batch after the step, so "
                    "without update they stay where they are",
                    LossKitWarning,
                    stacklevel=4,
                )
            base = self._per_key(self._base, 1.0, weights.detach())
            self._base = base.index_copy_(0, self.index(keys, weights.device), weights.detach())
            self._pending, self._stepped = True, False
        return super().combine(losses, weights, keys, present)

    def update(self, recomputed: LossResult | Tensor) -> None:
        """Learn the weights from the terms recomputed on the same batch after the step.

        ``recomputed`` is the criterion's result (any of its keys; those absent from it or with
        nothing to average are left out) or a tensor of every key's weighted term.
        """
        from losskit.result import LossResult

        famo = self._famo()
        if self._before is None or self._seen is None:
            raise ConfigError("FAMO.update needs a training call of the criterion before it")
        if isinstance(recomputed, LossResult):
            keys = recomputed.keys()
            if not keys:
                return  # every term absent: nothing to learn from
            values = torch.stack([p.detach() for p in recomputed.parts.values()]).float()
            counts = recomputed.counts
            present = torch.stack(
                [counts[k] > 0 if k in counts else torch.ones((), dtype=torch.bool) for k in keys]
            ).to(values.device)
            index = self.index(keys, values.device)
            if self._base is not None:
                values = values * self._base.to(values.device).index_select(0, index)
        else:
            values = recomputed.detach().float()
            keys = self.keys
            if values.shape != (len(keys),):
                raise ConfigError(
                    f"FAMO.update takes one value per key {list(keys)}, got shape "
                    f"{tuple(values.shape)}"
                )
            present = torch.ones(len(keys), dtype=torch.bool, device=values.device)
            index = self.index(keys, values.device)
        # Unscaled values (not a training call's): the mean over the ranks that held each key.
        found, found_keys, found_present = self.across_ranks(values, keys, present, spread=False)
        if found_keys != keys:
            values, present = found, found_present if found_present is not None else present
            index = self.index(found_keys, values.device)
        after = self._before.to(values.device, values.dtype).clone().index_copy_(0, index, values)
        taking = torch.zeros_like(self._seen).index_copy_(0, index, present.to(self._seen.device))
        self._learn(famo, self._before.to(after.dtype), after, taking & self._seen)
        self._pending = False

    def _learn(self, famo: _FamoState, before: Tensor, after: Tensor, taking: Tensor) -> None:
        """torchjd's ``FAMO.update`` over the keys taking part; the others' logits and Adam
        moments are held."""
        floor = famo.min_losses.to(before.dtype)
        delta = torch.log(before - floor + _FAMO_EPSILON) - torch.log(after - floor + _FAMO_EPSILON)
        delta = torch.where(taking, delta, torch.zeros_like(delta))
        with torch.enable_grad():
            z = torch.softmax(torch.where(taking, famo.logits, -torch.inf), dim=0)
            (grad,) = torch.autograd.grad(z, famo.logits, grad_outputs=delta)
        grad = torch.where(taking, grad, torch.zeros_like(grad))  # every key out: 0, not NaN
        if famo.optimizer is None:
            famo.optimizer = self._adam(famo)
        state = famo.optimizer.state.get(famo.logits, {})
        held = {name: state[name].clone() for name in ("exp_avg", "exp_avg_sq") if name in state}
        logits = famo.logits.detach().clone()
        famo.logits.grad = grad
        famo.optimizer.step()
        famo.logits.grad = None  # FAMO alone steps its logits, never a user's optimizer
        with torch.no_grad():
            famo.logits.copy_(torch.where(taking, famo.logits, logits))
            for name, moment in famo.optimizer.state[famo.logits].items():
                if name in ("exp_avg", "exp_avg_sq"):
                    old = held.get(name, torch.zeros_like(moment))
                    moment.copy_(torch.where(taking, moment, old))

    def _adam(self, famo: _FamoState) -> torch.optim.Adam:
        return torch.optim.Adam([famo.logits], lr=self.lr, weight_decay=self.weight_decay)

    def step(self) -> None:
        self._stepped = True

    def get_extra_state(self) -> dict[str, Any]:
        famo = self._famo()
        return {
            "before": self._before,
            "seen": self._seen,
            "optimizer": famo.optimizer.state_dict() if famo.optimizer is not None else None,
            "base": self._base,
            "last": self._last,
        }

    def set_extra_state(self, state: Any) -> None:
        famo = self._famo()
        self._before = state["before"]
        self._seen = state["seen"]
        famo.optimizer = None
        if state["optimizer"] is not None:
            famo.optimizer = self._adam(famo)
            famo.optimizer.load_state_dict(state["optimizer"])
        self._base = state["base"]
        self._last = state["last"]
