"""The keyed criterion: route outputs and batch fields to each term, weight and sum them.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> crit = lk.Criterion({
    ...     "cls": lk.Term("cross_entropy", input="logits", target="label"),
    ...     "reg": lk.Term("mse", input="value", target="y",
    ...                    weight=lk.schedules.LinearWarmup(0.0, 1.0, steps=10)),
    ... })
    >>> outputs = {"logits": torch.zeros(4, 3), "value": torch.zeros(4)}
    >>> batch = {"label": torch.tensor([0, 1, 2, 0]), "y": torch.ones(4)}
    >>> res = crit(outputs, batch)
    >>> res.total, res["reg"], res.weights["reg"]
    (tensor(1.0986), tensor(1.), tensor(0.))
    >>> for _ in range(5):
    ...     crit.step()
    >>> crit(outputs, batch).weights["reg"]
    tensor(0.5000)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

import torch
from torch import Tensor, nn

from losskit._module_call import GLOBAL_HOOKS, hook_registries
from losskit.balancers import BalancerSpec, GradientBalancer, GradNorm, Mean, create
from losskit.errors import ConfigError, LossKitWarning, NonFiniteLossError
from losskit.result import LossResult
from losskit.schedules import Constant
from losskit.term import PlanEntry, Term, compute_terms

__all__ = ["Criterion", "TermLike"]

TermLike: TypeAlias = Term | nn.Module | Callable[..., Tensor] | str
"""A :class:`Term`, or a loss (module, callable ``(outputs, batch)`` or name) to wrap in one."""

NonFinite = Literal["raise", "warn", "skip"]
Check = Literal["first", "always", "off"]

_FOLD = 32  # steps between folds of the pending non-finite vectors

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _terms_from(
    terms: Mapping[str, TermLike] | Iterable[tuple[str, TermLike]],
) -> list[tuple[str, Term]]:
    pairs = list(terms.items()) if isinstance(terms, Mapping) else list(terms)
    if not pairs:
        raise ConfigError("a Criterion needs at least one term")
    seen: set[str] = set()
    checked: list[tuple[str, Term]] = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ConfigError(f"terms must be a mapping or (key, term) pairs, got {pair!r}")
        key, term = pair
        if not isinstance(key, str) or not _KEY.match(key):
            raise ConfigError(
                f"invalid term key {key!r}: use letters, digits, '_' and '-', starting with a "
                "letter or '_' (keys become log names such as 'loss/<key>')"
            )
        if key in seen:
            raise ConfigError(f"duplicate term key {key!r}: every term needs its own key")
        seen.add(key)
        checked.append((key, term if isinstance(term, Term) else Term(term)))
    return checked


@dataclass
class _Progress:
    """Counters updated every step; a plain object because nn.Module's __setattr__ is slow."""

    step: int = 0  # optimizer steps taken: the schedules' position
    calls: int = 0  # forward calls, for check="first"
    checked_at: int = 0  # the step of the last non-finite check


def _entry(key: str, term: Term) -> PlanEntry:
    return key, term, term._fast


class _Steady:
    """What the criterion's steady-state call reads, gathered in a plain object.

    ``nn.Module`` defines ``__getattr__``, so every attribute of a module takes a slow lookup
    (no specialisation by the interpreter); a dozen of them per call showed in a training step.
    The hook registries are torch's own dicts, mutated in place, so holding them is exact.
    """

    __slots__ = ("flagging", "hooks", "keys", "pending", "plan", "views", "weights")

    def __init__(self, crit: Criterion) -> None:
        self.plan = crit._plan
        self.keys = crit._active
        self.weights = crit._weights
        self.views = crit._weight_views
        self.pending = crit._pending
        self.flagging = crit._check != "off"
        self.hooks = hook_registries(crit)


def _summarise(tensor: Tensor) -> str:
    text = f"shape {tuple(tensor.shape)}, dtype {str(tensor.dtype).removeprefix('torch.')}"
    if tensor.numel() == 0:
        return text + ", empty"
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return text + f", min {tensor.min().item()}, max {tensor.max().item()}"
    t = tensor.detach().float()
    finite = t[torch.isfinite(t)]
    nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    bounds = (
        f", min {finite.min().item():.4g}, max {finite.max().item():.4g}" if finite.numel() else ""
    )
    return text + f"{bounds}, {nan} NaN, {inf} inf"


class Criterion(nn.Module):
    """Keyed loss terms, weighted and summed into one total.

    Args:
        terms: a mapping (or ``(key, term)`` pairs, where duplicates are refused) from key to a
            :class:`Term` or anything a Term wraps.
        balancer: how the weighted terms become the total: ``"sum"`` (default), ``"mean"``
            (divided by the number of enabled terms; reported weights include the division), any
            name from :func:`losskit.balancers.available` (``"magnitude"``, ``"uncertainty"``,
            ``"upgrad"``, ...), a table ``{"name": "upgrad", "shared": model.trunk, ...}``, or a
            :class:`~losskit.balancers.Balancer` instance. Term weights (fixed or scheduled)
            scale each term before the balancer sees it; ``res.weights`` reports the weight
            each key effectively had.
        nonfinite: what to do when a term is NaN or infinite: ``"raise"`` a
            :class:`~losskit.errors.NonFiniteLossError` naming the keys and summarising their
            inputs, ``"warn"`` and go on, or ``"skip"`` the offending terms for this step (their
            weight is reported as 0).
        check: when to look: ``"first"`` checks synchronously on the first ``check_steps`` calls
            and afterwards accumulates a device-side flag that :meth:`check_finite` (called by
            the Tracker when it flushes) inspects, so steady-state steps never wait on the host;
            ``"always"`` checks every call (a host sync); ``"off"`` never checks. ``"skip"``
            needs a decision every step and so always checks.
        check_steps: how many calls ``"first"`` checks synchronously.

    ``crit(outputs, batch)`` returns a :class:`~losskit.LossResult`. Call :meth:`step` once per
    optimizer step to advance weight schedules.

    A term made with ``monitor=True`` is computed on every call under ``torch.no_grad()`` (no
    graph, so no extra backward) and logged as ``loss/<key>``; it is not one of :attr:`keys`,
    never enters the total, the weights or the balancer, and is not checked for non-finite
    values (it cannot harm training; ``losskit lint`` reports it). ``res.monitored`` holds
    those values.

    Example::

        >>> crit = Criterion({"fit": Term("mse"), "mae": Term("l1", monitor=True)})
        >>> res = crit(torch.zeros(2, requires_grad=True), torch.tensor([1.0, 3.0]))
        >>> res.total, res.monitored, crit.keys
        (tensor(5., grad_fn=<DotBackward0>), {'mae': tensor(2.)}, ('fit',))
        >>> sorted(res.log())
        ['loss', 'loss/fit', 'loss/mae', 'weight/fit']
    """

    # Plain attributes, not buffers: every forward reads them and nn.Module's buffer lookup is
    # slow; forward moves them to the parts' device on first use, and their values are derived
    # from the step count kept in the extra state, so they need no place in state_dict.
    _weights: Tensor
    _nonfinite_sum: Tensor

    def __init__(
        self,
        terms: Mapping[str, TermLike] | Iterable[tuple[str, TermLike]],
        *,
        balancer: BalancerSpec = "sum",
        nonfinite: NonFinite = "raise",
        check: Check = "first",
        check_steps: int = 10,
    ) -> None:
        super().__init__()
        resolved = create(balancer)
        self._configure(nonfinite, check, check_steps)
        self.terms = nn.ModuleDict()
        for key, term in self._split_monitors(_terms_from(terms)):
            try:
                self.terms[key] = term
            except KeyError as exc:
                raise ConfigError(
                    f"term key {key!r} clashes with an attribute of the term container; "
                    "choose another key"
                ) from exc
        resolved.bind(self.keys)
        self.balancer = resolved
        # Sum and Mean fold into the precomputed weight vector: the default path stays as is.
        self._adaptive = not getattr(resolved, "static", False)
        self._divide = isinstance(resolved, Mean)
        self._gradient = isinstance(resolved, GradientBalancer)
        if self._gradient or isinstance(resolved, GradNorm):
            single = [k for k, t in self.terms.items() if getattr(t.loss, "single_backward", 0)]
            if single:
                raise ConfigError(
                    f"term(s) {single} use torch's chunked linear cross-entropy, which allows "
                    f"one backward pass, but the {type(resolved).__name__} balancer takes one "
                    "per key; build them with chunked=False or use a loss-level balancer"
                )
        self._steady: _Steady | None = None
        self._progress = _Progress()
        self._enabled = {k for k, t in self.terms.items() if t.enabled_at_start}
        self._active: tuple[str, ...] = ()
        self._plan: tuple[PlanEntry, ...] = ()
        self._subsets: dict[
            tuple[str, ...], tuple[tuple[str, ...], tuple[PlanEntry, ...], Tensor]
        ] = {}
        self._weight_values: list[float] = []
        self._constant_weights = all(isinstance(t.weight, Constant) for t in self.terms.values())
        self._weights = torch.zeros(0)
        self._weight_views: tuple[Tensor, ...] = ()
        self._nonfinite_sum = torch.zeros(0, dtype=torch.float64)
        # Detached per-step vectors not yet added into _nonfinite_sum: appending a reference costs
        # no kernel, and one fold every _FOLD steps keeps the list short.
        self._pending: list[Tensor] = []
        self._refresh()

    # -- checking -------------------------------------------------------------------------
    def _configure(self, nonfinite: NonFinite, check: Check, check_steps: int) -> None:
        if nonfinite not in ("raise", "warn", "skip"):
            raise ConfigError(f"nonfinite must be 'raise', 'warn' or 'skip', got {nonfinite!r}")
        if check not in ("first", "always", "off"):
            raise ConfigError(f"check must be 'first', 'always' or 'off', got {check!r}")
        if nonfinite == "skip" and check == "off":
            raise ConfigError("nonfinite='skip' needs checking: use check='always' or 'first'")
        self._nonfinite: NonFinite = nonfinite
        self._check: Check = check
        self._check_steps = check_steps

    @property
    def nonfinite(self) -> NonFinite:
        """What a non-finite term does: ``"raise"``, ``"warn"`` or ``"skip"``."""
        return self._nonfinite

    @nonfinite.setter
    def nonfinite(self, value: NonFinite) -> None:
        self._configure(value, self._check, self._check_steps)
        self._settle()

    @property
    def check(self) -> Check:
        """When terms are checked for non-finite values: ``"first"``, ``"always"`` or ``"off"``."""
        return self._check

    @check.setter
    def check(self, value: Check) -> None:
        self._configure(self._nonfinite, value, self._check_steps)
        self._settle()

    @property
    def check_steps(self) -> int:
        """How many calls ``check="first"`` checks synchronously."""
        return self._check_steps

    @check_steps.setter
    def check_steps(self, value: int) -> None:
        self._configure(self._nonfinite, self._check, value)
        self._settle()

    # -- monitor-only terms ----------------------------------------------------------------
    def _split_monitors(self, pairs: list[tuple[str, Term]]) -> list[tuple[str, Term]]:
        """Keep monitor-only terms apart (in ``self.monitors``); return the trained ones.

        A criterion without monitors pays one attribute test per call for the feature.
        """
        self.monitors = nn.ModuleDict({k: t for k, t in pairs if t.monitor})
        trained = [(k, t) for k, t in pairs if not t.monitor]
        if not trained:
            raise ConfigError(
                f"every term ({[k for k, _ in pairs]}) is monitor-only: a Criterion needs at "
                "least one term to train on"
            )
        self._monitor_plan: tuple[PlanEntry, ...] = tuple(
            _entry(k, t) for k, t in self.monitors.items() if isinstance(t, Term)
        )
        return trained

    @property
    def monitored_keys(self) -> tuple[str, ...]:
        """The keys of the monitor-only terms (logged, never trained on), in order."""
        return tuple(entry[0] for entry in self._monitor_plan)

    # -- state ---------------------------------------------------------------------------
    @property
    def keys(self) -> tuple[str, ...]:
        """Every term key, in order."""
        return tuple(self.terms.keys())

    @property
    def enabled(self) -> tuple[str, ...]:
        """The keys of the enabled terms, in order."""
        return self._active

    @property
    def step_count(self) -> int:
        """How many times :meth:`step` has been called (the schedules' position)."""
        return self._progress.step

    def term(self, key: str) -> Term:
        """The :class:`Term` under ``key``."""
        self._require_key(key)
        term = self.terms[key]
        assert isinstance(term, Term)
        return term

    def enable(self, *keys: str) -> None:
        """Compute and include these terms from the next call on."""
        self._set_enabled(keys, True)

    def disable(self, *keys: str) -> None:
        """Stop computing these terms (they leave the total and the logs) until re-enabled."""
        self._set_enabled(keys, False)

    def step(self) -> None:
        """Advance the step count once per optimizer step: schedules move to the next value."""
        self._progress.step += 1
        if not self._constant_weights:
            self._refresh()
        if self._adaptive:
            self.balancer.step()

    def _require_key(self, key: str) -> None:
        if key not in self.terms:
            raise KeyError(f"no term {key!r}; the criterion has {list(self.terms.keys())}")

    def _set_enabled(self, keys: tuple[str, ...], on: bool) -> None:
        for key in keys:
            self._require_key(key)
        self.check_finite()
        self._enabled = self._enabled | set(keys) if on else self._enabled - set(keys)
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the enabled terms and their weight vector for the current step."""
        active = tuple(k for k in self.terms if k in self._enabled)
        if active == self._active and self._constant_weights:
            return
        values = [self.term(k).weight(self._progress.step) for k in active]
        if self._divide and active:
            values = [v / len(active) for v in values]
        if active != self._active or values != self._weight_values:
            # A new tensor (not an in-place copy): graphs built before this step keep theirs.
            device = self._weights.device
            self._weights = torch.tensor(values, dtype=torch.float32, device=device)
            self._weight_views = self._weights.unbind()
            self._subsets.clear()
            if active != self._active:
                self._nonfinite_sum = torch.zeros(len(active), dtype=torch.float64, device=device)
                self._pending.clear()
                self._plan = tuple(_entry(k, self.term(k)) for k in active)
            self._active, self._weight_values = active, values
            self._settle()

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "step": self._progress.step,
            "enabled": sorted(self._enabled),
            "calls": self._progress.calls,
        }

    def set_extra_state(self, state: Any) -> None:
        self._progress.step = int(state["step"])
        self._progress.calls = int(state["calls"])
        self._progress.checked_at = self._progress.step
        unknown = set(state["enabled"]) - set(self.terms.keys())
        if unknown:
            raise ConfigError(f"state_dict names terms this criterion lacks: {sorted(unknown)}")
        self._enabled = set(state["enabled"])
        self._refresh()
        self._settle()

    # -- forward -------------------------------------------------------------------------
    def __call__(
        self, outputs: Any, batch: Any = None, *, keys: Sequence[str] | None = None
    ) -> LossResult:
        steady = self._steady
        if (
            steady is not None
            and keys is None
            and not (any(steady.hooks) or any(GLOBAL_HOOKS))
            and self._compiled_call_impl is None
            and not torch.compiler.is_compiling()
        ):
            # The hot path, in this one frame: every enabled term, fixed weights, past the
            # synchronous checks (what _trained and _combined do in that state), reading what
            # it needs from `steady` (an nn.Module's own attributes are slow to look up).
            parts = compute_terms(steady.plan, outputs, batch)
            stacked = torch.stack(parts)
            weights = steady.weights
            if stacked.dtype is weights.dtype and stacked.device == weights.device:
                result = LossResult(
                    torch.dot(stacked, weights), steady.keys, tuple(parts), steady.views
                )
                if steady.flagging:  # the lazy non-finite flag
                    steady.pending.append(stacked.detach())
                    if len(steady.pending) >= _FOLD:
                        self._fold()
                return result
            return self._combined(steady.keys, tuple(parts), stacked, None, outputs, batch)
        called: LossResult = super().__call__(outputs, batch, keys=keys)
        return called

    def forward(
        self, outputs: Any, batch: Any = None, *, keys: Sequence[str] | None = None
    ) -> LossResult:
        """Compute the enabled terms on ``outputs`` and ``batch``; see :class:`LossResult`.

        ``keys`` restricts the computation to those terms (the enabled ones among them), e.g. the
        terms one optimizer steps on; their weights are the same as in the full total.
        """
        result = self._trained(outputs, batch, keys)
        if self._monitor_plan:
            with torch.no_grad():  # monitor-only terms: values, no graph
                values = compute_terms(self._monitor_plan, outputs, batch)
                result._monitored = tuple(zip(self.monitored_keys, values))
        return result

    def _trained(self, outputs: Any, batch: Any, keys: Sequence[str] | None) -> LossResult:
        """The total, parts and weights of the enabled (trained) terms."""
        if keys is None:
            keys, plan, index = self._active, self._plan, None
        else:
            keys, plan, index = self._subset(tuple(keys))
        if not keys:
            raise ConfigError("every term selected is disabled: nothing to compute")
        parts = tuple(compute_terms(plan, outputs, batch))
        return self._combined(keys, parts, torch.stack(parts), index, outputs, batch)

    def _combined(
        self,
        keys: tuple[str, ...],
        parts: tuple[Tensor, ...],
        stacked: Tensor,
        index: Tensor | None,
        outputs: Any,
        batch: Any,
    ) -> LossResult:
        """The total of computed parts: devices, dtypes, subsets, checks and balancers."""
        weights = self._weights
        moved = weights.device != stacked.device
        if moved:
            self._weights = weights = weights.to(stacked.device)
            self._weight_views = weights.unbind()
            self._fold()
            self._nonfinite_sum = self._nonfinite_sum.to(stacked.device)
            self._subsets.clear()
            if index is not None:
                keys, _, index = self._subset(keys)
        views = self._weight_views
        if index is not None:
            weights = weights.index_select(0, index)
            views = weights.unbind()
        compiling = torch.compiler.is_compiling()
        if not compiling:
            self._progress.calls += 1
            if moved or self._progress.calls == self._check_steps:
                self._settle()  # the weights the steady state reads moved, or its checks ended
        sync = self.check == "always" or self.nonfinite == "skip"
        sync = sync or (self.check == "first" and self._progress.calls <= self.check_steps)
        if sync and not compiling:
            finite = torch.isfinite(stacked.detach())
            if not bool(finite.all()):
                bad = [k for k, ok in zip(keys, finite.tolist()) if not ok]
                self._handle_nonfinite(bad, parts, outputs, batch)
                if self.nonfinite == "skip" and self._adaptive:
                    # The balancer sees the offending terms as detached zeros with weight 0.
                    flags = finite.tolist()
                    clean = [
                        p if ok else torch.zeros_like(p.detach()) for p, ok in zip(parts, flags)
                    ]
                    weights = weights * finite.to(weights.dtype)
                    return self._balanced(keys, parts, torch.stack(clean), weights, outputs)
                if self.nonfinite == "skip":
                    weights = weights * finite.to(weights.dtype)
                    kept = [p * w for p, w, ok in zip(parts, weights, finite.tolist()) if ok]
                    total = torch.stack(kept).sum() if kept else stacked.new_zeros(()).detach()
                    return LossResult(total, keys, parts, weights)
        elif self.check != "off":
            if index is None and not compiling:
                self._pending.append(stacked.detach())
                if len(self._pending) >= _FOLD:
                    self._fold()
            elif index is None:
                self._nonfinite_sum.add_(stacked.detach())
            else:
                self._nonfinite_sum.index_add_(0, index, stacked.detach().double())
        if self._adaptive:
            return self._balanced(keys, parts, stacked, weights, outputs)
        if stacked.dtype != weights.dtype:
            if stacked.dtype in (torch.float16, torch.bfloat16):
                stacked = stacked.float()  # a half-precision total would round the weights
            weights = weights.to(stacked.dtype)
        return LossResult(torch.dot(stacked, weights), keys, parts, views)

    def _settle(self) -> None:
        """Whether ``__call__`` may take the steady state itself (and what it reads there).

        The steady state: past the synchronous checks (or none asked for), fixed weights (no
        adaptive balancer), no monitor-only terms and ``forward`` not overridden by a subclass.
        """
        steady = (
            bool(self._active)
            and not self._adaptive
            and self._nonfinite != "skip"
            and (
                self._check == "off"
                or (self._check == "first" and self._progress.calls >= self._check_steps)
            )
            and not self._monitor_plan
            and type(self).forward is _forward
        )
        self._steady = _Steady(self) if steady else None

    def _balanced(
        self,
        keys: tuple[str, ...],
        parts: tuple[Tensor, ...],
        stacked: Tensor,
        weights: Tensor,
        outputs: Any,
    ) -> LossResult:
        """The total and weights of an adaptive balancer (and its backward, gradient-level)."""
        if stacked.dtype in (torch.float16, torch.bfloat16):
            stacked = stacked.float()
        if weights.dtype != stacked.dtype:
            weights = weights.to(stacked.dtype)
        total, effective = self.balancer.combine(stacked, weights, keys)
        result = LossResult(total, keys, parts, effective)
        if self._gradient and torch.is_grad_enabled():
            balancer = cast(GradientBalancer, self.balancer)  # checked once, in __init__
            result._attach(balancer, (balancer.features(outputs), effective.detach()))
        return result

    def _subset(
        self, keys: tuple[str, ...]
    ) -> tuple[tuple[str, ...], tuple[PlanEntry, ...], Tensor]:
        cached = self._subsets.get(keys)
        if cached is None:
            for key in keys:
                self._require_key(key)
            chosen = tuple(k for k in self._active if k in keys)
            index = torch.tensor(
                [self._active.index(k) for k in chosen],
                dtype=torch.long,
                device=self._weights.device,
            )
            plan = tuple(_entry(k, self.term(k)) for k in chosen)
            cached = self._subsets[keys] = (chosen, plan, index)
        return cached

    # -- non-finite handling ---------------------------------------------------------------
    def _fold(self) -> None:
        """Add the pending per-step vectors into the running sum (one kernel, no host sync)."""
        if self._pending:
            self._nonfinite_sum.add_(torch.stack(self._pending).double().sum(0))
            self._pending.clear()

    def check_finite(self) -> None:
        """Inspect the device-side flag accumulated since the last check (one host sync).

        Raises or warns per ``nonfinite`` naming the keys that went non-finite and the range of
        steps. The Tracker calls this when it flushes; call it yourself in a hand-written loop.
        """
        if self._nonfinite_sum.numel() == 0:
            return
        self._fold()
        finite = torch.isfinite(self._nonfinite_sum).tolist()
        bad = [k for k, ok in zip(self._active, finite) if not ok]
        since = self._progress.checked_at
        self._progress.checked_at = self._progress.step
        self._nonfinite_sum.zero_()
        if bad:
            message = (
                f"loss term(s) {', '.join(map(repr, bad))} became non-finite between step "
                f"{since} and step {self._progress.step}; use Criterion(check='always') to stop "
                "at the offending step with a summary of the term's inputs"
            )
            self._act(message)

    def _handle_nonfinite(
        self, bad: list[str], parts: tuple[Tensor, ...], outputs: Any, batch: Any
    ) -> None:
        names = ", ".join(map(repr, bad))
        lines = [f"loss term(s) {names} are non-finite at step {self._progress.step}:"]
        for key in bad:
            value = parts[self._active.index(key)].detach()
            lines.append(f"  {key!r} = {value.item()}")
            chosen = self.term(key).selected(key, outputs, batch)
            if not chosen:
                lines.append("    (the term selects its own inputs from outputs and batch)")
            for role, tensor in chosen.items():
                lines.append(f"    {role}: {_summarise(tensor)}")
        self._act("\n".join(lines))

    def _act(self, message: str) -> None:
        if self.nonfinite == "raise":
            raise NonFiniteLossError(message)
        warnings.warn(message, LossKitWarning, stacklevel=4)

    def extra_repr(self) -> str:
        return f"nonfinite={self.nonfinite!r}, check={self.check!r}"


_forward = Criterion.forward  # a subclass that overrides forward goes through __call__
