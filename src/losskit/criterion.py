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

import functools
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

import torch
from torch import Tensor, nn

from losskit._checks import Check, check_mode
from losskit._shares import RankShares, tensors_in
from losskit.balancers import (
    AbsenceAwareBalancer,
    Balancer,
    BalancerSpec,
    GradientBalancer,
    capabilities,
    create,
)
from losskit.errors import ConfigError, LossKitWarning, NonFiniteLossError
from losskit.losses.contracts import ContractedLoss
from losskit.result import Count, LossResult, computed_counts
from losskit.schedules import Constant
from losskit.term import Term

__all__ = ["Criterion", "TermLike"]

TermLike: TypeAlias = Term | nn.Module | Callable[..., Tensor] | str
"""A :class:`Term`, or a loss (module, callable ``(outputs, batch)`` or name) to wrap in one."""

NonFinite = Literal["raise", "warn", "skip"]

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
    """Counters updated every step (a plain object: they are not module state)."""

    step: int = 0  # optimizer steps taken: the schedules' position
    calls: int = 0  # forward calls, for check="first"
    checked_at: int = 0  # the step of the last non-finite check
    skipped: int = 0  # calls where every trained term was optional and absent


Plan: TypeAlias = tuple[tuple[str, Term], ...]


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


def _check_weights(keys: tuple[str, ...], values: list[float], step: int) -> None:
    """Refuse a weight that is not a finite number >= 0, naming its term and the step."""
    for key, value in zip(keys, values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise ConfigError(
                f"term {key!r}: its weight at step {step} is {value!r}, expected a finite number "
                ">= 0; check the schedule (a negative weight would reward the loss, NaN would "
                "poison the total)"
            )


def _presence(counts: tuple[Tensor | None, ...], like: Tensor) -> Tensor:
    """True where a key's term has something to average (count > 0) or reports no count."""
    return torch.stack(
        [
            c.reshape(()) > 0 if c is not None else like.new_ones((), dtype=torch.bool)
            for c in counts
        ]
    )


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
            weight is reported as 0). Under ``"warn"`` and ``"skip"`` the catalogue losses of
            the terms leave non-finite inputs to the criterion
            (:attr:`~losskit.losses.contracts.ContractedLoss.nonfinite_inputs`), so the policy
            holds from the first call; under ``"raise"`` their value checks refuse them first,
            naming the tensor.
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

    # Plain attributes, not buffers: forward moves them to the parts' device on first use, and
    # their values are derived from the step count kept in the extra state, so they need no
    # place in state_dict.
    _weights: Tensor
    _balancer: Balancer  # the balancer, read without nn.Module.__getattr__
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
        self._tell_losses()
        resolved.bind(self.keys)
        self.balancer = resolved
        self._capabilities = capabilities(resolved)
        if self._capabilities.backward_per_key:
            single = [k for k, t in self.terms.items() if getattr(t.loss, "single_backward", 0)]
            if single:
                raise ConfigError(
                    f"term(s) {single} use torch's chunked linear cross-entropy, which allows "
                    f"one backward pass, but the {type(resolved).__name__} balancer takes one "
                    "per key; build them with chunked=False or use a loss-level balancer"
                )
        self._progress = _Progress()
        # Terms a batch may lack or that weigh their samples: under torch.distributed their
        # ranks' shares of each key's samples scale the training calls (see forward). A plain
        # ignore_index mean does not ask for it (a collective per step on every classifier);
        # optional=True does.
        spreads = any(
            isinstance(t, Term)
            and (t.optional or t.mask is not None or t.sample_weight is not None)
            for t in self.terms.values()
        )
        self._shares = RankShares(self.keys) if spreads else None
        self._enabled = {k for k, t in self.terms.items() if t.enabled_at_start}
        self._active: tuple[str, ...] = ()
        self._plan: Plan = ()
        self._subsets: dict[tuple[str, ...], tuple[tuple[str, ...], Plan, Tensor]] = {}
        self._weight_values: list[float] = []
        self._constant_weights = all(isinstance(t.weight, Constant) for t in self.terms.values())
        self._weights = torch.zeros(0)
        self._weight_views: tuple[Tensor, ...] | None = None  # _weights unbound, when asked
        self._nonfinite_sum = torch.zeros(0, dtype=torch.float64)
        # Detached per-step vectors not yet added into _nonfinite_sum: appending a reference costs
        # no kernel, and one fold every _FOLD steps keeps the list short.
        self._pending: list[Tensor] = []
        self._refresh()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "balancer":
            # Also in the instance dict: a submodule is found through nn.Module.__getattr__ (a
            # Python call per read), and every call combines through it.
            self.__dict__["_balancer"] = value

    # -- checking -------------------------------------------------------------------------
    def _configure(self, nonfinite: NonFinite, check: Check, check_steps: int) -> None:
        if nonfinite not in ("raise", "warn", "skip"):
            raise ConfigError(f"nonfinite must be 'raise', 'warn' or 'skip', got {nonfinite!r}")
        check = check_mode(check)
        if nonfinite == "skip" and check == "off":
            raise ConfigError("nonfinite='skip' needs checking: use check='always' or 'first'")
        self._nonfinite: NonFinite = nonfinite
        self._check: Check = check
        self._check_steps = check_steps
        # Calls up to this count look at the values synchronously (a host sync each).
        synchronous = check == "always" or nonfinite == "skip"
        self._synchronous_until = (
            float("inf") if synchronous else check_steps if check == "first" else 0
        )
        if "terms" in self._modules:
            self._tell_losses()

    def _tell_losses(self) -> None:
        """Tell the terms' catalogue losses who reports non-finite inputs: this criterion under
        ``nonfinite="warn"`` or ``"skip"`` with checks on (its policy holds from the first call),
        else their own value checks, which raise."""
        allow = self._nonfinite != "raise" and self._check != "off"
        for term in (*self.terms.values(), *self.monitors.values()):
            for part in term.modules():
                if isinstance(part, ContractedLoss):
                    part.nonfinite_inputs = "allow" if allow else "raise"

    @property
    def nonfinite(self) -> NonFinite:
        """What a non-finite term does: ``"raise"``, ``"warn"`` or ``"skip"``."""
        return self._nonfinite

    @nonfinite.setter
    def nonfinite(self, value: NonFinite) -> None:
        self._configure(value, self._check, self._check_steps)

    @property
    def check(self) -> Check:
        """When terms are checked for non-finite values: ``"first"``, ``"always"`` or ``"off"``."""
        return self._check

    @check.setter
    def check(self, value: Check) -> None:
        self._configure(self._nonfinite, value, self._check_steps)

    @property
    def check_steps(self) -> int:
        """How many calls ``check="first"`` checks synchronously."""
        return self._check_steps

    @check_steps.setter
    def check_steps(self, value: int) -> None:
        self._configure(self._nonfinite, self._check, value)

    # -- monitor-only terms ----------------------------------------------------------------
    def _split_monitors(self, pairs: list[tuple[str, Term]]) -> list[tuple[str, Term]]:
        """Keep monitor-only terms apart (in ``self.monitors``); return the trained ones."""
        self.monitors = nn.ModuleDict({k: t for k, t in pairs if t.monitor})
        trained = [(k, t) for k, t in pairs if not t.monitor]
        if not trained:
            raise ConfigError(
                f"every term ({[k for k, _ in pairs]}) is monitor-only: a Criterion needs at "
                "least one term to train on"
            )
        self._monitor_plan: Plan = tuple(
            (k, t) for k, t in self.monitors.items() if isinstance(t, Term)
        )
        return trained

    @property
    def monitored_keys(self) -> tuple[str, ...]:
        """The keys of the monitor-only terms (logged, never trained on), in order."""
        return tuple(entry[0] for entry in self._monitor_plan)

    @property
    def optional_keys(self) -> tuple[str, ...]:
        """The keys of the optional terms (trained and monitor-only), in order: a batch may lack
        them, so a rank may log none of their values in an interval. A
        :class:`~losskit.tracking.Tracker` given this criterion declares their ``loss/<key>``
        and ``weight/<key>`` names, so that ranks reduce them instead of disagreeing.

        Example::

            >>> crit = Criterion({"a": Term("mse", input="a", target="a"),
            ...                   "b": Term("mse", input="b", target="b", optional=True)})
            >>> crit.optional_keys
            ('b',)
        """
        every = (*self.terms.items(), *self._monitor_plan)
        return tuple(k for k, t in every if isinstance(t, Term) and t.optional)

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
        if not self._capabilities.fixed_weights:
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
        if active != self._active or values != self._weight_values:
            _check_weights(active, values, self._progress.step)
            # A new tensor (not an in-place copy): graphs built before this step keep theirs.
            device = self._weights.device
            self._weights = torch.tensor(values, dtype=torch.float32, device=device)
            self._weight_views = None
            self._subsets.clear()
            if active != self._active:
                self._nonfinite_sum = torch.zeros(len(active), dtype=torch.float64, device=device)
                self._pending.clear()
                self._plan = tuple((k, self.term(k)) for k in active)
            self._active, self._weight_values = active, values

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

    # -- forward -------------------------------------------------------------------------
    def forward(
        self, outputs: Any, batch: Any = None, *, keys: Sequence[str] | None = None
    ) -> LossResult:
        """Compute the enabled terms on ``outputs`` and ``batch``; see :class:`LossResult`.

        ``keys`` restricts the computation to those terms (the enabled ones among them), e.g. the
        terms one optimizer steps on; their weights are the same as in the full total.
        """
        if keys is None:
            chosen, plan, index = self._active, self._plan, None
        else:
            chosen, plan, index = self._subset(tuple(keys))
        if not chosen:
            raise ConfigError("every term selected is disabled: nothing to compute")
        computed: list[Tensor] = []
        counts: list[Count | None] = []
        absent: list[str] = []
        for key, term in plan:
            if term.optional and not term.present(outputs, batch, key):
                absent.append(key)
                continue
            value, count = term.measure(key, outputs, batch)
            computed.append(value)
            counts.append(count)
        monitored: tuple[tuple[str, Tensor], ...] = ()
        if self._monitor_plan:
            with torch.no_grad():  # monitor-only terms: values, no graph
                monitored = tuple(
                    (key, term.compute(key, outputs, batch))
                    for key, term in self._monitor_plan
                    if not term.optional or term.present(outputs, batch, key)
                )
        if absent:
            present = tuple(k for k in chosen if k not in absent)
            if not present:
                return self._skipped(tuple(absent), monitored, outputs, batch)
            chosen, _, index = self._subset(present)
        known = tuple(counts) if counts.count(None) < len(counts) else None
        return self._combined(
            chosen, tuple(computed), index, outputs, batch, monitored, known, tuple(absent)
        )

    def _skipped(
        self,
        absent: tuple[str, ...],
        monitored: tuple[tuple[str, Tensor], ...],
        outputs: Any,
        batch: Any,
    ) -> LossResult:
        """A batch that holds none of the trained terms' inputs: nothing to train on."""
        self._progress.skipped += 1
        warnings.warn(
            f"a batch held the inputs of none of the trained terms ({', '.join(absent)} are "
            "optional and absent): nothing to train on, the step is skipped "
            "(Criterion.skipped_steps counts them)",
            LossKitWarning,
            stacklevel=3,
        )
        empty = torch.zeros(0)
        spreading = self._shares is not None and self._shares.active()
        total = self._spread_nothing(outputs, batch) if spreading else empty.sum()
        return LossResult(total, (), (), empty, monitored=monitored, absent=absent)

    def _spread_nothing(self, outputs: Any, batch: Any) -> Tensor:
        """Under DDP, a rank with nothing to train on still takes part: in the count reduction
        and the balancer's (every rank makes the same collectives), and with a zero total
        through the outputs' graph, so that DDP's gradient hooks fire on this rank too."""
        if self._capabilities.synchronize:
            # Its once-per-step reduction of per-key gradients needs something from every rank.
            raise ConfigError(
                "a batch held the inputs of none of the trained terms on this rank, and the "
                f"{type(self._balancer).__name__} balancer reduces per-key gradients across "
                "ranks once per step, which needs every rank's: give every batch at least one "
                "required (non-optional) term, or use a loss-level balancer under "
                "torch.distributed"
            )
        found = [t for t in tensors_in(outputs) if t.is_floating_point()]
        empty = torch.zeros(0, device=found[0].device if found else self._weights.device)
        assert self._shares is not None
        self._shares.of((), None, batch, empty)
        total, _ = self._balance(empty, empty, (), empty.bool())
        for tensor in found:
            if tensor.requires_grad:
                total = total + tensor.reshape(-1)[:0].sum()  # exactly 0, never NaN
        return total

    def _balance(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...], present: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The balancer's total and weights; ``present`` only to one that declares it takes it."""
        if self._capabilities.handles_absence:
            aware = cast(AbsenceAwareBalancer, self._balancer)
            return aware.combine(losses, weights, keys, present=present)
        return self._balancer.combine(losses, weights, keys)

    @property
    def skipped_steps(self) -> int:
        """Calls where no trained term was present (every one optional and absent)."""
        return self._progress.skipped

    def _combined(
        self,
        keys: tuple[str, ...],
        parts: tuple[Tensor, ...],
        index: Tensor | None,
        outputs: Any,
        batch: Any,
        monitored: tuple[tuple[str, Tensor], ...],
        counts: tuple[Count | None, ...] | None = None,
        absent: tuple[str, ...] = (),
    ) -> LossResult:
        """The total of computed parts: devices, dtypes, subsets, checks and the balancer."""
        stacked = torch.stack(parts)
        # Which keys have anything to average, for the balancers that ask (no host sync; Sum
        # and Mean never pay for it).
        absence = self._capabilities.handles_absence
        present = None
        if absence and counts is not None:
            counts = computed_counts(counts)
            present = _presence(counts, stacked)
        weights = self._weights
        if weights.device != stacked.device:
            self._weights = weights = weights.to(stacked.device)
            self._weight_views = None
            self._fold()
            self._nonfinite_sum = self._nonfinite_sum.to(stacked.device)
            self._subsets.clear()
            if index is not None:
                keys, _, index = self._subset(keys)
        if index is not None:
            weights = weights.index_select(0, index)
        compiling = torch.compiler.is_dynamo_compiling()
        if not compiling:
            self._progress.calls += 1
        combined = stacked
        if self._progress.calls <= self._synchronous_until and not compiling:
            finite = torch.isfinite(stacked.detach())
            if not bool(finite.all()):
                bad = [k for k, ok in zip(keys, finite.tolist()) if not ok]
                self._handle_nonfinite(bad, keys, parts, outputs, batch)
                if self.nonfinite == "skip":
                    # The balancer sees the offending terms as detached zeros with weight 0.
                    flags = finite.tolist()
                    combined = torch.stack(
                        [p if ok else torch.zeros_like(p.detach()) for p, ok in zip(parts, flags)]
                    )
                    weights = weights * finite.to(weights.dtype)
                    if absence:
                        present = finite if present is None else present & finite
        elif self._check != "off":  # the device-side non-finite flag (no host sync)
            if index is None and not compiling:
                self._pending.append(stacked.detach())
                if len(self._pending) >= _FOLD:
                    self._fold()
            elif index is None:
                self._nonfinite_sum.add_(stacked.detach())
            else:
                self._nonfinite_sum.index_add_(0, index, stacked.detach().double())
        shares = None
        if self._shares is not None and self._shares.active():  # a plain criterion: None
            if counts is not None:
                counts = computed_counts(counts)
            shares = self._shares.of(keys, counts, batch, stacked)
            combined = combined * shares.to(combined.dtype)
        if combined.dtype in (torch.float16, torch.bfloat16):
            combined = combined.float()  # a half-precision total would round the weights
        if weights.dtype != combined.dtype:
            weights = weights.to(combined.dtype)
        total, effective = self._balance(combined, weights, keys, present)
        if effective is self._weights:  # unchanged since the last call: the same views
            views = self._weight_views
            if views is None:
                views = self._weight_views = effective.detach().unbind()
        else:
            views = effective.detach().unbind()
        backward = None
        if self._capabilities.owns_backward and torch.is_grad_enabled():
            balancer = cast(GradientBalancer, self.balancer)
            # The rank's shares weigh the per-key gradients it contributes (not reported).
            seeds = effective if shares is None else effective * shares.to(effective.dtype)
            context = (balancer.features(outputs), seeds.detach())
            backward = functools.partial(balancer.backward, context=context)
        return LossResult(
            total,
            keys,
            parts,
            views,
            monitored=monitored,
            backward=backward,
            counts=counts,
            absent=absent,
        )

    def _subset(self, keys: tuple[str, ...]) -> tuple[tuple[str, ...], Plan, Tensor]:
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
            plan = tuple((k, self.term(k)) for k in chosen)
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
                f"{since + 1} and step {self._progress.step}; use Criterion(check='always') (in a "
                'run file: check = "always" at the top) to stop at the offending step with a '
                "summary of the term's inputs"
            )
            self._act(message)

    def _handle_nonfinite(
        self,
        bad: list[str],
        keys: tuple[str, ...],
        parts: tuple[Tensor, ...],
        outputs: Any,
        batch: Any,
    ) -> None:
        names = ", ".join(map(repr, bad))
        # numbered as the log numbers steps: the first optimizer step is step 1
        lines = [f"loss term(s) {names} are non-finite at step {self._progress.step + 1}:"]
        for key in bad:
            value = parts[keys.index(key)].detach()
            lines.append(f"  {key!r} = {value.item()}")
            term = self.term(key)
            chosen = term.selected(key, outputs, batch)
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
