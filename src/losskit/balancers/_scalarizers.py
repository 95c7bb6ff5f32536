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
from torch import Tensor

from losskit._dist import global_mean
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
    ``keys=`` route) uses those entries only. ``whole`` scalarizers keep history tied to the full
    key set and refuse subsets.
    """

    per_key: ClassVar[tuple[str, ...]] = ()
    whole: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.scalarizer: scalarization.Scalarizer | None = None
        self._device = torch.device("cpu")
        self._last: Tensor | None = None  # whole: the last training weights, for validation
        # per learnable parameter: its value at the last step and the steps it stayed there
        self._unchanged: dict[str, tuple[Tensor, int]] = {}
        self._moving: set[str] = set()  # seen to change: an optimizer steps it
        self._warned = False

    def _make(self, n: int) -> scalarization.Scalarizer:
        raise NotImplementedError

    def bind(self, keys: tuple[str, ...]) -> None:
        super().bind(keys)
        self.scalarizer = self._make(len(keys))

    def _scalarize(self, values: Tensor, keys: tuple[str, ...]) -> Tensor:
        assert self.scalarizer is not None, "bind() the balancer first"
        if keys == self.keys:
            return self.scalarizer(values)
        if self.whole:
            raise ConfigError(
                f"{type(self).__name__} keeps history for the criterion's whole set of terms "
                f"{list(self.keys)} and cannot balance the subset {list(keys)} (a term disabled "
                "at run time or a keys= route); use another balancer, or keep every term enabled"
            )
        replaced = {}
        for name in self.per_key:
            tensor = getattr(self.scalarizer, name, None)
            if isinstance(tensor, Tensor):
                replaced[name] = tensor.index_select(0, self.index(keys, values.device))
        if not replaced:
            return self.scalarizer(values)
        out: Tensor = torch.func.functional_call(self.scalarizer, replaced, (values,))
        return out

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]:
        if self._device != losses.device:
            self.to(losses.device)
            self._device = losses.device
        values = losses * weights  # a term weight scales its term before balancing
        training = torch.is_grad_enabled()
        if self.whole and not training:
            # Validation must not feed the history: reuse the last training weights.
            last = self._last if self._last is not None else torch.ones_like(values)
            if keys != self.keys:
                last = last.index_select(0, self.index(keys, values.device))
            return torch.dot(values, last), last * weights
        # Under torch.distributed the state (DWA's history, ...) and the weights follow the
        # global mean of the terms, so every rank applies the same weights.
        leaf = (global_mean(values.detach()) if training else values.detach()).requires_grad_(True)
        with torch.enable_grad():
            scalar = self._scalarize(leaf, keys)
            (slope,) = torch.autograd.grad(scalar, leaf, retain_graph=training)
        learnable = any(p.requires_grad for p in self.parameters())
        if not training or not (values.requires_grad or learnable):
            return scalar.detach(), slope * weights
        if self.whole:
            self._last = slope.detach()
        # The value is the scalarizer's; the model's gradient flows through `values` with the
        # slope as weights, the scalarizer's parameters' gradient through `scalar`.
        return scalar + torch.dot(slope, values - leaf), slope * weights

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

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="uncertainty")
        >>> res = crit(torch.zeros(2), torch.ones(2))
        >>> float(res.total.detach()), res.weights["a"], [n for n, _ in crit.named_parameters()]
        (1.0, tensor(0.5000), ['balancer.scalarizer.log_var'])
    """

    per_key: ClassVar[tuple[str, ...]] = ("log_var",)

    def _make(self, n: int) -> scalarization.Scalarizer:
        return scalarization.UW(n)


class IMTLL(_Scalarized):
    """IMTL-L (Liu et al., 2021): a learned log-scale per key, ``sum_k exp(s_k) L_k - s_k``.

    Like :class:`Uncertainty`, its parameters belong in an optimizer.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="imtl_l")
        >>> crit(torch.zeros(2), torch.ones(2)).weights["b"]
        tensor(1.)
    """

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

    The weights stay uniform for the first two periods. DWA keeps per-period history for the
    whole key set, so it refuses calls on a subset of the keys.

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

    whole: ClassVar[bool] = True

    def __init__(self, every: int, temperature: float = 2.0) -> None:
        super().__init__()
        if every < 1:
            raise ConfigError(f"DWA: every must be >= 1 optimizer step, got {every}")
        self.every = every
        self.temperature = temperature
        self._steps = 0

    def _make(self, n: int) -> scalarization.Scalarizer:
        return scalarization.DWA(self.temperature)

    def step(self) -> None:
        self._steps += 1
        if self._steps % self.every == 0:
            assert isinstance(self.scalarizer, scalarization.DWA)
            self.scalarizer.step()

    def get_extra_state(self) -> dict[str, Any]:
        dwa = self.scalarizer
        assert isinstance(dwa, scalarization.DWA)
        return {
            "steps": self._steps,
            "loss_sum": dwa._loss_sum,
            "n_batches": dwa._n_batches,
            "previous_averages": list(dwa._previous_averages),
            "last": self._last,
        }

    def set_extra_state(self, state: Any) -> None:
        dwa = self.scalarizer
        assert isinstance(dwa, scalarization.DWA)
        self._steps = int(state["steps"])
        dwa._loss_sum = state["loss_sum"]
        dwa._n_batches = int(state["n_batches"])
        dwa._previous_averages = list(state["previous_averages"])
        self._last = state["last"]


class FAMO(_Scalarized):
    """FAMO (Liu et al., 2023): decrease every term at about the same rate, from loss values only.

    FAMO learns its weights from how much each term fell across an optimizer step, so after the
    step call :meth:`update` with the criterion's result recomputed on the same batch::

        res = crit(model(x), batch); res.backward(); opt.step(); crit.step()
        with torch.no_grad():
            crit.balancer.update(crit(model(x), batch))

    Without :meth:`update` the weights never move; a warning says so at the first training call
    after an optimizer step that had none.

    Args:
        lr, weight_decay: of FAMO's internal Adam on its weight logits.
        min_losses: per-key lower bound ``b_k`` (terms must stay above it; default 0).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="famo")
        >>> res = crit(torch.zeros(2), torch.full((2,), 2.0))  # mse 4, l1 2
        >>> [round(float(res.weights[k]), 3) for k in ("a", "b")]
        [0.333, 0.667]
    """

    whole: ClassVar[bool] = True
    per_key: ClassVar[tuple[str, ...]] = ("_w", "min_losses")

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
        self._base: Tensor | None = None
        self._pending = False  # a training call not yet followed by update()
        self._stepped = False  # an optimizer step since that call
        self._update_warned = False

    def _make(self, n: int) -> scalarization.Scalarizer:
        floor = _per_key_tensor("FAMO", "min_losses", self.min_losses, self.keys, 0.0)
        return scalarization.FAMO(n, floor, lr=self.lr, weight_decay=self.weight_decay)

    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
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
            self._base = weights.detach()
            self._pending, self._stepped = True, False
        return super().combine(losses, weights, keys)

    def update(self, recomputed: LossResult | Tensor) -> None:
        """Learn the weights from the terms recomputed on the same batch after the step."""
        from losskit.result import LossResult

        assert isinstance(self.scalarizer, scalarization.FAMO)
        if isinstance(recomputed, LossResult):
            if recomputed.keys() != self.keys:
                raise ConfigError(
                    f"FAMO.update needs every key {list(self.keys)}, got {list(recomputed.keys())}"
                )
            values = torch.stack([p.detach() for p in recomputed.parts.values()]).float()
            if self._base is not None:
                values = values * self._base
        else:
            values = recomputed.detach().float()
        self.scalarizer.update(global_mean(values))
        self._pending = False

    def step(self) -> None:
        self._stepped = True

    def get_extra_state(self) -> dict[str, Any]:
        famo = self.scalarizer
        assert isinstance(famo, scalarization.FAMO)
        return {
            "prev_losses": famo._prev_losses,
            "optimizer": famo._optimizer.state_dict() if famo._optimizer is not None else None,
            "base": self._base,
            "last": self._last,
        }

    def set_extra_state(self, state: Any) -> None:
        famo = self.scalarizer
        assert isinstance(famo, scalarization.FAMO)
        famo._prev_losses = state["prev_losses"]
        famo._optimizer = None
        if state["optimizer"] is not None:
            famo._optimizer = torch.optim.Adam(
                [famo._w], lr=famo.lr, weight_decay=famo.weight_decay
            )
            famo._optimizer.load_state_dict(state["optimizer"])
        self._base = state["base"]
        self._last = state["last"]
