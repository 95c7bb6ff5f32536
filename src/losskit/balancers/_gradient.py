"""Gradient-level balancing: torchjd aggregators over the per-key gradients of shared parameters.

``res.backward()`` computes, for every key, the gradient of its weighted term with respect to the
shared parameters (one row of the Jacobian), lets a torchjd aggregator combine the rows into one
update, and gives every other parameter its ordinary gradient. With a shared feature tensor this
is torchjd's ``mtl_backward`` (one backward per key down to the features, then one batched
backward through the shared part); with bare parameters it is ``autojac.backward`` plus an
ordinary backward for the rest.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from losskit._dist import all_reduce_sum, world_size
from losskit._lazy import LazyModule
from losskit.balancers._features import FeatureRows, feature_gradients
from losskit.balancers._protocol import BalancerBase, BalancingError, Capabilities
from losskit.balancers._registry import BALANCERS, GradientMethod
from losskit.balancers._shared import Shared, _entries, shared_modules, trainable
from losskit.errors import ConfigError, LossKitWarning, MissingDependencyError, NonFiniteLossError

if TYPE_CHECKING:
    from torchjd import aggregation
    from torchjd.autogram import Engine
    from torchjd.autojac import backward as jac_backward
    from torchjd.autojac import mtl_backward

    from losskit.result import LossResult
else:
    aggregation = LazyModule("torchjd.aggregation")
    _autogram = LazyModule("torchjd.autogram")

    def Engine(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 (torchjd's class)
        return _autogram.Engine(*args, **kwargs)

    _autojac = LazyModule("torchjd.autojac")

    def jac_backward(*args: Any, **kwargs: Any) -> Any:
        return _autojac.backward(*args, **kwargs)

    def mtl_backward(*args: Any, **kwargs: Any) -> Any:
        return _autojac.mtl_backward(*args, **kwargs)


__all__ = ["EngineChoice", "Gradient", "Level"]

Level = Literal["parameters", "features"]
EngineChoice = Literal["auto", "autojac", "autogram"]
"""Where a gradient balancer aggregates: over the shared parameters' per-key gradients, or over
the per-key gradients of the shared representation (MGDA-UB's upper bound)."""

_EXTRA = "pip install 'losskit[balancing]'"


def _gradient_method(method: str) -> GradientMethod:
    """The registry entry of a gradient-level balancer name (its torchjd aggregator)."""
    factory = BALANCERS.resolve(method, family="gradient").factory
    if not isinstance(factory, GradientMethod):
        raise ConfigError(
            f"{method!r} is registered as a gradient balancer but is not a GradientMethod"
        )
    return factory


def _check_solvers(method: GradientMethod) -> None:
    if method.aggregator != "NashMTL":
        return
    import cvxpy

    if "ECOS" not in cvxpy.installed_solvers():  # type: ignore[no-untyped-call]
        # cvxpy >= 1.6 no longer ships ECOS; torchjd would then fall back on every step.
        raise MissingDependencyError(
            f"nash_mtl needs the ECOS solver, which cvxpy does not find: {_EXTRA} (or pip "
            "install ecos)"
        )


#: ``engine="auto"`` holds the Jacobian (autojac) up to this many numbers (8 MiB in float32):
#: on a 66 k-parameter trunk with 4 keys (1 MiB) autojac's step is 1.6x faster than autogram's;
#: on 2.2 M parameters with 2 keys (17.6 MiB) it is 5-9% faster but holds 14 MiB more.
_SMALL_JACOBIAN = 1 << 21

#: aggregators that draw random numbers: under several processes rank 0's draw is used everywhere
_RANDOMISED = ("PCGrad", "GradDrop", "Random")


def _gramian_based(aggregator: Any) -> bool:
    """Whether the aggregator's weights are a function of the Gramian of the rows alone."""
    return isinstance(aggregator, aggregation.GramianWeightedAggregator)


def _gramian_methods() -> list[str]:
    """The registered gradient methods that feature-level aggregation serves."""
    served = []
    for entry in BALANCERS.entries("gradient"):
        spec = entry.factory
        gramian = aggregation.GramianWeightedAggregator
        if isinstance(spec, GradientMethod) and issubclass(spec.aggregator_class(), gramian):
            served.append(spec.name)
    return served


def _refuse_at_features(method: str, aggregator: Any) -> None:
    if _gramian_based(aggregator):
        return
    raise ConfigError(
        f"level='features' cannot serve the gradient balancer {method!r}: it needs the key "
        "gradients themselves (not only their Gramian), and at feature level only the K x K "
        "Gramian of the gradients with respect to the shared representation exists. Use one of "
        f"{_gramian_methods()} at level='features', or {method!r} at level='parameters'"
    )


def _randomised() -> tuple[type, ...]:
    found = (getattr(aggregation, name, None) for name in _RANDOMISED)
    return tuple(cls for cls in found if isinstance(cls, type))


class _SolverWatch:
    """Counts solver failures that torchjd's Nash-MTL recovers from silently."""

    def __init__(self) -> None:
        self.failures: list[str] = []


class _WatchedProblem:
    def __init__(self, problem: Any, watch: _SolverWatch) -> None:
        self._problem = problem
        self._watch = watch

    def solve(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._problem.solve(*args, **kwargs)
        except Exception as exc:
            self._watch.failures.append(f"{type(exc).__name__}: {exc}")
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)


def _watch_nash(aggregator: aggregation.NashMTL, watch: _SolverWatch) -> None:
    weighting = aggregator.weighting
    original = weighting._init_optim_problem

    def init() -> None:
        original()
        weighting.prob = _WatchedProblem(weighting.prob, watch)  # type: ignore[assignment]

    weighting._init_optim_problem = init  # type: ignore[method-assign]


def _build(method: str, n: int, options: dict[str, Any]) -> aggregation.Aggregator:
    spec = _gradient_method(method)
    try:
        _check_solvers(spec)
        return spec.build(n, options)
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError):
            raise
        raise MissingDependencyError(
            f"the gradient balancer {method!r} needs optional solvers ({exc}); install them "
            f"with {_EXTRA}"
        ) from exc
    except TypeError as exc:
        raise ConfigError(f"gradient balancer {method!r}: bad options {options}: {exc}") from exc


def _select(selector: Any, outputs: Any) -> Tensor:
    if callable(selector):
        found = selector(outputs)
    elif isinstance(selector, (str, int)):
        try:
            found = outputs[selector]
        except (KeyError, IndexError, TypeError):
            held = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
            raise ConfigError(
                f"features={selector!r} not found in the model outputs ({held})"
            ) from None
    else:
        raise ConfigError(f"features= takes a key, a position or a callable, got {selector!r}")
    if not isinstance(found, Tensor):
        raise ConfigError(f"features={selector!r} selected a {type(found).__name__}, not a tensor")
    return found


def _tensors(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output] if output.requires_grad else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


class Gradient(BalancerBase):
    """Combine the per-key gradients of the shared parameters with a torchjd aggregator.

    The criterion's total stays the weighted sum (it is what is logged); ``res.backward()``
    gives the shared parameters the aggregated update and every other parameter its ordinary
    gradient, and ``res.weights`` then holds the weight each key's gradient had in the shared
    update (for aggregators that are not weighted, the least-squares weights of the update in
    the span of the key gradients).

    Args:
        method: the name of a gradient-level balancer (``"upgrad"``, ``"mgda"``, ``"pcgrad"``,
            ``"cagrad"``, ``"imtl_g"``, ``"aligned_mtl"``, ``"nash_mtl"``, ...: the entries of
            family ``"gradient"`` in :data:`~losskit.balancers.BALANCERS`) or a torchjd
            ``Aggregator``.
        shared: the shared module(s) or parameters. Their frozen parameters are left out. With
            modules and no ``features``, the modules' outputs become the features (captured by
            a forward hook).
        features: the shared representation in the model outputs (a key, a position or
            ``fn(outputs) -> Tensor``); without ``shared``, everything it depends on is shared.
        level: ``"parameters"`` (default) aggregates the per-key gradients of the shared
            parameters; ``"features"`` aggregates the per-key gradients of the shared
            representation (the features: the ``shared`` modules' outputs or ``features=``),
            as MGDA-UB does: each key is backpropagated through its head only, the aggregator
            weighs the keys from the K x K Gramian of those gradients, and one ordinary
            backward runs through the trunk with the weighted gradient. About the cost of a
            summed step; it serves the aggregators whose weights depend only on the Gramian
            (not ``nash_mtl``, ``config``, ``graddrop``), and under ``torch.distributed``
            all-reduces the Gramian (K x K numbers) so every rank applies the full batch's
            weights while DDP averages the gradients as usual. See ``docs/balancing.md``.
        engine: at parameter level, how the Gramian of the per-key gradients is computed.
            ``"autojac"``: torchjd's ``mtl_backward``, the Jacobian (keys x shared parameters)
            in memory, a Gramian per parameter; serves every aggregator, bare parameters and
            torch.distributed. ``"autogram"``: torchjd's Gramian engine over the ``shared``
            modules, which never holds the Jacobian, then one weighted backward; Gramian-based
            aggregators, ``shared`` given as modules (hooked when the balancer is built), one
            process. ``"auto"`` (default) takes autojac while the Jacobian is small (keys x
            shared parameters at most ``2**21`` numbers, 8 MiB in float32: there autojac is up
            to 1.6x faster and holding it costs little), else autogram whenever it can serve
            the call (the least memory, docs/balancing.md), autojac otherwise (for good once a
            call shows it cannot). Fixed when the keys are bound, so every step of a
            configuration takes the same engine. Its first autogram step checks the update's norm
            read from autogram's Gramian against autograd's; if they differ (a module that
            uses a child's parameters without calling it) it warns and keeps to autojac
            (``"autogram"`` raises).
        skip_zero: leave out, for this step, keys whose gradient on the shared parameters is
            exactly zero (a term that is zero for the batch); they carry no information and would
            stall MGDA-like methods. Their weight is reported as 0.
        **options: passed to the aggregator (``c`` for CAGrad, ``pref_vector``, ...).

    Aggregation happens per call of ``res.backward()``: under gradient accumulation, each
    micro-batch is aggregated on its own and the window's update is the ``scale``-weighted sum
    of the micro-batch updates. Under AMP the per-key gradients are unscaled before they are
    aggregated and the result is scaled back, so ``GradScaler.unscale_``/``step`` work as usual;
    a non-finite gradient under a scaler is passed on for the scaler to skip the step, without
    one it raises :class:`~losskit.errors.NonFiniteLossError` naming the keys.

    Under ``torch.distributed`` (several processes) ``res.backward()`` only gathers the per-key
    gradients of the shared parameters; :func:`losskit.engine.distributed.synchronize_gradients`
    (called by the Trainer and the integrations before each optimizer step) averages them over
    the ranks and aggregates once per optimizer step, so every rank writes the same update,
    the one of a single process on the global batch; ``res.weights`` is set then. See
    ``docs/distributed.md``.

    Example::

        >>> import torch, losskit as lk
        >>> trunk = torch.nn.Linear(3, 4)
        >>> head_a, head_b = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
        >>> crit = lk.Criterion({
        ...     "a": lk.Term("mse", input="a", target="y"),
        ...     "b": lk.Term("mse", input="b", target="y"),
        ... }, balancer=lk.balancers.Gradient("mgda", shared=trunk))
        >>> h = trunk(torch.randn(8, 3))
        >>> res = crit({"a": head_a(h).squeeze(-1), "b": -head_b(h).squeeze(-1)},
        ...            {"y": torch.ones(8)})
        >>> res.backward()
        >>> round(float(res.weights["a"] + res.weights["b"]), 4)  # MGDA's weights sum to one
        1.0

    At feature level the weights come from the Gramian of the gradients with respect to the
    trunk's output (here named in the outputs), then one backward runs through the trunk::

        >>> upper = lk.balancers.Gradient("mgda", features="h", level="features")
        >>> crit = lk.Criterion({
        ...     "a": lk.Term("mse", input="a", target="y"),
        ...     "b": lk.Term("mse", input="b", target="y"),
        ... }, balancer=upper)
        >>> h = torch.tanh(torch.randn(8, 3) @ torch.randn(3, 4, requires_grad=True))
        >>> res = crit({"h": h, "a": head_a(h).squeeze(-1), "b": -head_b(h).squeeze(-1)},
        ...            {"y": torch.ones(8)})
        >>> res.backward()
        >>> round(float(res.weights["a"] + res.weights["b"]), 4), upper.last_engine
        (1.0, 'features')
    """

    capabilities = Capabilities(
        backward_per_key=True,
        owns_backward=True,
        synchronize=True,
        fsdp_safe=False,
        derivative_weights=False,
    )
    aggregator: aggregation.Aggregator

    def __init__(
        self,
        method: str | aggregation.Aggregator,
        shared: Shared | None = None,
        *,
        features: Any = None,
        level: Level = "parameters",
        engine: EngineChoice = "auto",
        skip_zero: bool = True,
        **options: Any,
    ) -> None:
        super().__init__()
        if level not in ("parameters", "features"):
            raise ConfigError(f"level must be 'parameters' or 'features', got {level!r}")
        self.level = level
        if engine not in ("auto", "autojac", "autogram"):
            raise ConfigError(f"engine must be 'auto', 'autojac' or 'autogram', got {engine!r}")
        if level == "features" and engine != "auto":
            raise ConfigError(
                f"engine={engine!r} chooses how the parameters' Gramian is computed; "
                "level='features' computes the representation's: leave engine='auto'"
            )
        self.engine = engine
        # torchjd's Gramian engine over the shared modules (its hooks must see the forward pass):
        # built below where it can serve, dropped (with its hooks) where it turns out it cannot.
        self._autogram: Any = None
        self._engine_checked = False
        #: how the last ``res.backward()`` aggregated: ``"autojac"``, ``"autogram"`` or
        #: ``"features"`` (None before the first)
        self.last_engine: str | None = None
        if shared is None and features is None:
            raise ConfigError(
                "a gradient balancer needs the shared part of the model: shared=<module or "
                "parameters> and/or features=<key of the shared representation in the outputs>"
            )
        # Aggregators that take the number of keys are built by bind().
        self._per_key_count = False
        if isinstance(method, str):
            spec = _gradient_method(method)
            self.method, self._per_key_count = spec.name, spec.per_key_count
        elif isinstance(method, aggregation.Aggregator):
            if options:
                raise ConfigError("options go to the aggregator's constructor, not with one")
            self.method = type(method).__name__
            self.aggregator = method
        else:
            raise ConfigError(f"method must be a name or a torchjd Aggregator, got {method!r}")
        self._options = options
        # Whether it draws random numbers depends on the method, known from its registry entry.
        random = isinstance(getattr(self, "aggregator", None), _randomised()) or (
            isinstance(method, str) and spec.random_draws
        )
        self.capabilities = replace(type(self).capabilities, random_draws=random)
        if level == "features":
            if features is None and shared is not None and shared_modules(shared) is None:
                raise ConfigError(
                    "level='features' aggregates the gradients of the shared representation: "
                    "give shared=<module(s)> (their outputs are the features) or features=<key "
                    "of the representation in the model outputs>, not bare parameters"
                )
            # One ordinary backward: DDP reduces the gradients, the Gramian is reduced here.
            self.capabilities = replace(self.capabilities, synchronize=False)
        self._shared = _entries(shared) if shared is not None else None
        self._selector = features
        self.skip_zero = skip_zero
        self._captured: list[Tensor] = []
        self._hooks: list[RemovableHandle] = []
        self._watch = _SolverWatch()
        self._rows = FeatureRows()  # level="features": the per-key rows' storage, reused
        self._checked = False
        self._pending: list[Tensor] = []  # per shared parameter: keys x numel, this step
        self._pending_params: list[Tensor] = []
        self._pending_results: list[LossResult] = []
        self._pending_weights = torch.zeros(0)
        if isinstance(method, str) and not self._per_key_count:
            self.aggregator = _build(self.method, 0, options)  # fails now if a solver is missing
        if level == "features" and hasattr(self, "aggregator"):
            _refuse_at_features(self.method, self.aggregator)
        if engine == "autogram":
            if shared is None or shared_modules(shared) is None:
                raise ConfigError(
                    "engine='autogram' computes the Gramian over the shared modules: give "
                    "shared=<module(s)>, not bare parameters"
                )
            if hasattr(self, "aggregator") and not _gramian_based(self.aggregator):
                raise ConfigError(
                    f"engine='autogram' serves aggregators whose weights depend only on the "
                    f"Gramian ({_gramian_methods()}); {self.method!r} needs the gradients: use "
                    "engine='autojac'"
                )
        modules = shared_modules(shared) if shared is not None else None
        gramian = hasattr(self, "aggregator") and _gramian_based(self.aggregator)
        if level == "parameters" and engine != "autojac" and modules and gramian:
            self._autogram = Engine(*modules, batch_dim=None)
        if features is None and modules is not None:
            # The hook holds the balancer weakly: a dropped criterion stops capturing.
            hook = _Capture(self)
            for module in modules:
                self._hooks.append(module.register_forward_hook(hook))

    # -- set-up ---------------------------------------------------------------------------
    def bind(self, keys: tuple[str, ...]) -> None:
        super().bind(keys)
        if self._per_key_count:
            self.aggregator = _build(self.method, len(keys), self._options)
            if self.level == "features":
                _refuse_at_features(self.method, self.aggregator)
            if self.engine == "autogram" and not _gramian_based(self.aggregator):
                raise ConfigError(
                    f"engine='autogram' serves aggregators whose weights depend only on the "
                    f"Gramian ({_gramian_methods()}); {self.method!r} needs the gradients: use "
                    "engine='autojac'"
                )
        if isinstance(self.aggregator, aggregation.NashMTL):
            _watch_nash(self.aggregator, self._watch)
        if self.engine == "auto" and self._autogram is not None and self._shared is not None:
            jacobian = len(keys) * sum(p.numel() for p in trainable(self._shared))
            if jacobian <= _SMALL_JACOBIAN:
                self._autogram = None  # autojac: its hooks go with it

    def remove_hooks(self) -> None:
        """Detach the forward hooks from the shared modules."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # -- the protocol ---------------------------------------------------------------------
    def combine(
        self, losses: Tensor, weights: Tensor, keys: tuple[str, ...]
    ) -> tuple[Tensor, Tensor]:
        total = torch.dot(losses, weights)
        if total.requires_grad:
            total.register_hook(_refuse_plain_backward)  # type: ignore[no-untyped-call]
        return total, weights

    def features(self, outputs: Any) -> Any:
        if self._selector is not None:
            return [_select(self._selector, outputs)]
        captured, self._captured = self._captured, []
        return captured

    def backward(
        self,
        result: LossResult,
        context: Any,
        *,
        scale: float,
        grad_scaler: torch.amp.GradScaler | None,
        retain_graph: bool,
    ) -> Tensor | None:
        features, weights = cast(tuple[Any, Tensor], context)
        keys = result.keys()
        parts = [result[k] for k in keys]
        if scale == 0.0:
            return None
        device = parts[0].device
        factor = torch.full((), float(scale), device=device)
        if grad_scaler is not None:
            factor = grad_scaler.scale(factor)
        # Keys weighted 0 this step (scheduled off, skipped as non-finite) are left out.
        live = [i for i, (p, w) in enumerate(zip(parts, weights.tolist())) if p.requires_grad and w]
        if not live:
            return None
        if len(live) < len(self.keys) and isinstance(self.aggregator, aggregation.NashMTL):
            missing = [k for k in self.keys if k not in [keys[i] for i in live]]
            raise ConfigError(
                f"nash_mtl solves its bargaining problem for every key {list(self.keys)} and "
                f"cannot aggregate a call without {missing} (an optional term absent from the "
                "batch, a disabled or zero-weighted term, a keys= route); use another gradient "
                "balancer (upgrad, mgda, ...) or keep every term in every call"
            )
        tensors = [parts[i].float() for i in live]
        scaled = (weights * factor).unbind()
        seeds = [scaled[i] for i in live]
        if self.level == "features":
            self.last_engine = "features"
            live_keys = [keys[i] for i in live]
            rows = self._backward_features(
                tensors, seeds, features, live_keys, factor, grad_scaler, retain_graph
            )
            effective = torch.zeros_like(weights)
            effective[live] = (
                rows.index_select(0, self.index(live_keys, rows.device)).to(weights.dtype)
                * weights[live]
            )
            return effective
        shared = self._shared_params(features)
        if not shared:
            # Every shared parameter is frozen: nothing to aggregate, the rest trains as usual.
            torch.autograd.backward(tensors, seeds, retain_graph=retain_graph)
            return weights
        if features:
            self._check_features(features, shared)
        engine = self._engine_for(features)
        if engine is not None:
            live_keys = [keys[i] for i in live]
            found = self._backward_autogram(
                engine,
                tensors,
                seeds,
                features,
                shared,
                live_keys,
                factor,
                grad_scaler,
                retain_graph,
            )
            if found is not None:
                self.last_engine = "autogram"
                effective = torch.zeros_like(weights)
                effective[live] = found.to(weights.dtype) * weights[live]
                return effective
        self.last_engine = "autojac"
        try:
            if features:
                # torchjd backpropagates each term to the features on its own: terms that share
                # computations above the features need those kept for the next term.
                keep = retain_graph or _overlap(tensors, features)
                mtl_backward(
                    tensors,
                    features=features,
                    grad_tensors=seeds,
                    shared_params=shared,
                    retain_graph=keep,
                )
            else:
                self._jacobian_then_rest(tensors, seeds, shared, retain_graph)
            jacobians = [p.jac for p in shared]  # type: ignore[attr-defined]
        except ValueError as exc:
            raise ConfigError(
                f"gradient balancer {self.method!r}: {exc}. A term that reaches the shared "
                "parameters other than through the features (a weight decay on them, say) "
                "needs shared= given as parameters, without features"
            ) from exc
        finally:
            for p in shared:
                if hasattr(p, "jac"):
                    del p.jac
        if world_size(None) > 1:
            self._defer(jacobians, [keys[i] for i in live], weights, shared, result, grad_scaler)
            return None  # reported by synchronize()
        rows = self._aggregate(jacobians, [keys[i] for i in live], factor, grad_scaler, shared)
        if len(live) == len(keys):
            return rows * weights
        effective = torch.zeros_like(weights)
        effective[live] = rows * weights[live]
        return effective

    # -- feature level: the Gramian of the representation's per-key gradients ---------------
    def _backward_features(
        self,
        tensors: list[Tensor],
        seeds: list[Tensor],
        features: list[Tensor],
        keys: list[str],
        factor: Tensor,
        grad_scaler: torch.amp.GradScaler | None,
        retain_graph: bool,
    ) -> Tensor:
        """Weigh the keys by the Gramian of their feature gradients, then one backward whose
        gradient at the features is the weighted sum; returns the row weights over the bound
        keys."""
        if not features:
            raise ConfigError(
                f"gradient balancer {self.method!r} at level='features' found no features this "
                "call: the shared modules did not run with gradients enabled, or features= "
                "selected nothing"
            )
        positions = [self.keys.index(k) for k in keys]
        found = feature_gradients(tensors, seeds, features, positions, len(self.keys), self._rows)
        several = world_size(None) > 1
        # Alone, the call's keys; under several processes every bound key (ranks may differ).
        chosen = list(range(len(self.keys))) if several else positions
        index = torch.tensor(chosen, device=factor.device)
        gramian = found.gramian.index_select(0, index).index_select(1, index)
        rows = self._combine_rows(
            gramian, [], [self.keys[i] for i in chosen], factor, grad_scaler, []
        )
        full = torch.zeros(len(self.keys), device=factor.device)
        if rows is None:  # an overflow under a GradScaler: the plain sum, for it to skip
            torch.autograd.backward(tensors, seeds, retain_graph=retain_graph)
            full[index] = 1.0
            return full
        full[index] = rows
        if several and isinstance(self.aggregator, _randomised()):
            full = _broadcast_from_rank0([], full)
        _backward_with(
            tensors, seeds, features, found.combined(full.to(factor.dtype)), retain_graph
        )
        return full

    # -- parameter level through torchjd's Gramian engine ----------------------------------
    def _engine_for(self, features: list[Tensor]) -> Any:
        """The autogram engine when this call uses it (see ``engine``), else None."""
        if self._autogram is None:
            return None
        if world_size(None) > 1 or not features:
            if self.engine == "autogram":
                raise ConfigError(
                    "engine='autogram' cannot serve this call: it needs one process (under "
                    "torch.distributed the ranks' Jacobians must be summed before the Gramian) "
                    "and the shared modules' outputs; use engine='auto' or 'autojac'"
                )
            self._autogram = None  # its hooks go with it
            return None
        return self._autogram

    def _backward_autogram(
        self,
        engine: Any,
        tensors: list[Tensor],
        seeds: list[Tensor],
        features: list[Tensor],
        shared: list[Tensor],
        keys: list[str],
        factor: Tensor,
        grad_scaler: torch.amp.GradScaler | None,
        retain_graph: bool,
    ) -> Tensor | None:
        """The Gramian from torchjd's engine, the weights, then the weighted gradient put at the
        features for one ordinary backward; returns the row weights over ``keys`` (None when
        the engine refused the call: autojac runs it)."""
        vector = torch.stack([t * s for t, s in zip(tensors, seeds)])
        try:
            gramian = engine.compute_gramian(vector).float()
        except ValueError as exc:
            # A forward pass of the shared modules with gradients and no backward since (a
            # validation pass that kept gradients on, say): this call runs autojac.
            warnings.warn(
                f"{self.method}: torchjd's Gramian engine refused this call ({exc}); it runs "
                "autojac instead",
                LossKitWarning,
                stacklevel=5,
            )
            return None
        rows = self._combine_rows(gramian, [], keys, factor, grad_scaler, [])
        if rows is None:  # an overflow under a GradScaler: the plain sum, for it to skip
            torch.autograd.backward(tensors, seeds, retain_graph=retain_graph)
            return torch.ones(len(keys), device=factor.device)
        combined = torch.autograd.grad(
            vector, features, grad_outputs=rows.to(vector.dtype), retain_graph=True
        )
        # Checked once, on a step that starts from empty .grad (then they hold this update).
        check = not self._engine_checked and all(p.grad is None for p in shared)
        _backward_with(tensors, seeds, features, list(combined), retain_graph)
        if check:
            self._check_engine(gramian, rows, shared)
        return rows

    def _check_engine(self, gramian: Tensor, rows: Tensor, shared: list[Tensor]) -> None:
        """Once: whether the update's squared norm, read from the engine's Gramian, is the one
        autograd wrote into the shared parameters (it is not when a module uses parameters it
        holds for a child without calling the child: the engine never sees them)."""
        expected = float(rows @ gramian @ rows)
        found = sum(float(p.grad.float().pow(2).sum()) for p in shared if p.grad is not None)
        if not (math.isfinite(expected) and math.isfinite(found)) or expected == 0.0:
            return  # nothing to compare on this step: checked on a later one
        self._engine_checked = True
        if math.isclose(expected, found, rel_tol=1e-3):
            return
        if self.engine == "autogram":
            raise ConfigError(
                f"engine='autogram' missed part of the shared update: autograd gives {found:.6g} "
                f"for its squared norm, torchjd's Gramian engine {expected:.6g} (a module uses "
                "parameters of a child without calling it); use engine='autojac' for this model"
            )
        warnings.warn(
            f"{self.method}: the squared norm of the shared update is {found:.6g} by autograd and "
            f"{expected:.6g} by torchjd's Gramian engine (a module may use parameters of a child "
            "without calling it): this step's weights came from an incomplete Gramian; "
            "engine='auto' keeps to autojac from now on",
            LossKitWarning,
            stacklevel=5,
        )
        self._autogram = None  # its hooks go with it

    # -- several processes: aggregate once per optimizer step ------------------------------
    def _defer(
        self,
        jacobians: list[Tensor],
        live: list[str],
        weights: Tensor,
        shared: list[Tensor],
        result: LossResult,
        grad_scaler: torch.amp.GradScaler | None,
    ) -> None:
        """Add this micro-batch's per-key gradients to the window's, to be averaged over the
        ranks and aggregated by :meth:`synchronize`."""
        if grad_scaler is not None and grad_scaler.is_enabled():
            raise ConfigError(
                f"the gradient balancer {self.method!r} under torch.distributed aggregates the "
                "ranks' averaged gradients once per optimizer step, which fp16 loss scaling "
                "(a GradScaler) would skew: use amp='bf16' or float32"
            )
        m = len(self.keys)
        device = weights.device
        rows = torch.tensor([self.keys.index(k) for k in live], device=device)
        if not self._pending:
            self._pending = [torch.zeros(m, p.numel(), device=p.device) for p in shared]
            self._pending_params = shared
            self._pending_weights = torch.zeros(m, device=device)
        elif [id(p) for p in shared] != [id(p) for p in self._pending_params]:
            raise ConfigError(
                f"the gradient balancer {self.method!r} saw other shared parameters within one "
                "optimizer step; call losskit.engine.distributed.synchronize_gradients(...) "
                "before every optimizer.step()"
            )
        for buffer, jacobian in zip(self._pending, jacobians):
            buffer.index_add_(0, rows, jacobian.reshape(len(live), -1).to(buffer.dtype))
        index = torch.tensor([result.keys().index(k) for k in live], device=device)
        self._pending_weights.index_copy_(0, rows, weights.index_select(0, index).float())
        self._pending_results.append(result)

    def step(self) -> None:
        """Refuse to move on while per-key gradients deferred under torch.distributed wait for
        :func:`losskit.engine.distributed.synchronize_gradients` (the optimizer would have
        stepped without the shared parameters' update, and the deferred results hold memory)."""
        if self._pending:
            raise ConfigError(
                f"the gradient balancer {self.method!r} under torch.distributed defers the "
                f"shared parameters' gradients of {len(self._pending_results)} backward "
                "pass(es) to the optimizer step: call "
                "losskit.engine.distributed.synchronize_gradients(criterion, model.parameters()) "
                "before every optimizer.step() (the Trainer and the Lightning and Accelerate "
                "integrations do)"
            )

    def synchronize(self) -> list[Tensor]:
        """Average the deferred per-key gradients over the ranks and write the aggregated update
        into the shared parameters' ``.grad``; returns those parameters (none when nothing was
        deferred). Called once per optimizer step by
        :func:`losskit.engine.distributed.synchronize_gradients`."""
        if not self._pending:
            return []
        pending, shared = self._pending, self._pending_params
        results, term = self._pending_results, self._pending_weights
        self._pending, self._pending_params, self._pending_results = [], [], []
        size = world_size(None)
        flat = torch.cat([p.reshape(-1) for p in pending])
        if size > 1:
            flat = all_reduce_sum(flat, None).div_(size)
        offset = 0
        averaged = []
        for p in pending:
            averaged.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        one = torch.ones((), device=term.device)
        rows = self._aggregate(averaged, list(self.keys), one, None, shared)
        if size > 1 and isinstance(self.aggregator, _randomised()):
            rows = _broadcast_from_rank0(shared, rows)
        effective = rows.to(term.dtype) * term
        for result in results:
            index = self.index(result.keys(), effective.device)
            result.report_weights(effective.index_select(0, index))
        return shared

    # -- the pieces ------------------------------------------------------------------------
    def _shared_params(self, features: list[Tensor]) -> list[Tensor]:
        if self._shared is not None:
            return trainable(self._shared)
        return _leaves(features)

    def _check_features(self, features: list[Tensor], shared: list[Tensor]) -> None:
        if self._checked or self._shared is None:
            return
        self._checked = True
        known = {id(p) for p in shared}
        outside = [p for p in _leaves(features) if id(p) not in known]
        if outside:
            shapes = [tuple(p.shape) for p in outside[:5]]
            raise ConfigError(
                f"the features depend on {len(outside)} trainable tensor(s) outside shared= "
                f"(shapes {shapes}); their gradient would be lost: add them to shared="
            )

    @staticmethod
    def _jacobian_then_rest(
        tensors: list[Tensor], seeds: list[Tensor], shared: list[Tensor], retain_graph: bool
    ) -> None:
        m = len(tensors)
        eye = torch.eye(m, device=seeds[0].device, dtype=seeds[0].dtype)
        jac_backward(
            tensors,
            jac_tensors=[eye[i] * seeds[i] for i in range(m)],
            inputs=shared,
            retain_graph=True,
        )
        # The ordinary gradient for everything, then the shared parameters' part undone.
        saved = [p.grad for p in shared]
        for p in shared:
            p.grad = None
        torch.autograd.backward(tensors, seeds, retain_graph=retain_graph)
        for p, g in zip(shared, saved):
            p.grad = g

    def _aggregate(
        self,
        jacobians: list[Tensor],
        keys: list[str],
        factor: Tensor,
        grad_scaler: torch.amp.GradScaler | None,
        shared: list[Tensor],
    ) -> Tensor:
        """Write the aggregated update into the shared ``.grad``; return the row weights."""
        m = len(keys)
        flat = [j.reshape(m, -1) for j in jacobians]
        gramian = torch.zeros(m, m, device=factor.device)
        for f in flat:
            f32 = f if f.dtype == torch.float32 else f.float()
            gramian += f32 @ f32.T
        rows = self._combine_rows(gramian, flat, keys, factor, grad_scaler, shared)
        if rows is None:
            # Pass the overflow on: GradScaler finds it in unscale_ and skips the step.
            for p, f in zip(shared, flat):
                _accumulate(p, f.sum(0).reshape(p.shape))
            # The step is skipped: report the term weights, as a plain sum would.
            return torch.ones(m, device=factor.device)
        return rows

    def _combine_rows(
        self,
        gramian: Tensor,
        flat: list[Tensor],
        keys: list[str],
        factor: Tensor,
        grad_scaler: torch.amp.GradScaler | None,
        shared: list[Tensor],
    ) -> Tensor | None:
        """The row weights the aggregator picks from the (scaled) Gramian, with ``flat`` the
        rows' parameter blocks (written into ``shared``'s ``.grad``; none at feature level).
        None for an overflow under a GradScaler."""
        m = len(keys)
        norms = gramian.diagonal().tolist()  # the one host sync of the step
        bad = [k for k, v in zip(keys, norms) if not math.isfinite(v)]
        if bad:
            if grad_scaler is not None and grad_scaler.is_enabled():
                return None
            where = "representation" if self.level == "features" else "parameters"
            raise NonFiniteLossError(
                f"the gradient of term(s) {', '.join(map(repr, bad))} with respect to the shared "
                f"{where} is non-finite; nothing was aggregated"
            )
        keep = list(range(m))
        if self.skip_zero and not isinstance(self.aggregator, aggregation.NashMTL):
            keep = [i for i, v in enumerate(norms) if v > 0.0]
        if not keep:
            return torch.zeros(m, device=factor.device)
        if len(keep) == m:
            weights = self._weights(flat, gramian / factor.float() ** 2, factor, keys, keep, shared)
            return weights.float()
        index = torch.tensor(keep, device=factor.device)
        flat = [f.index_select(0, index) for f in flat]
        gramian = gramian.index_select(0, index).index_select(1, index)
        weights = self._weights(flat, gramian / factor.float() ** 2, factor, keys, keep, shared)
        rows = torch.zeros(m, device=factor.device)
        rows[index] = weights.float()
        return rows

    def _weights(
        self,
        flat: list[Tensor],
        gramian: Tensor,
        factor: Tensor,
        keys: list[str],
        keep: list[int],
        shared: list[Tensor],
    ) -> Tensor:
        aggregator = self.aggregator
        self._watch.failures.clear()
        try:
            if isinstance(aggregator, aggregation.GramianWeightedAggregator):
                weights = aggregator.gramian_weighting(gramian)
                update = None
            else:
                matrix = torch.cat(flat, dim=1) / factor
                if isinstance(aggregator, aggregation.WeightedAggregator):
                    weights = aggregator.weighting(matrix)
                    update = None
                else:
                    vector = aggregator(matrix)
                    update = vector * factor
                    # Least-squares weights of the update in the span of the rows.
                    weights = torch.linalg.pinv(gramian) @ (matrix @ vector)
        except Exception as exc:
            raise BalancingError(
                f"{self.method} could not combine the gradients of {[keys[i] for i in keep]}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if self._watch.failures:
            warnings.warn(
                f"{self.method}: the solver failed {len(self._watch.failures)} time(s) this step "
                f"({self._watch.failures[-1]}); torchjd fell back to the previous weights "
                f"{weights.tolist()} for {[keys[i] for i in keep]}",
                LossKitWarning,
                stacklevel=5,
            )
        weights = weights.to(factor.dtype)
        if update is None:
            for p, f in zip(shared, flat):
                _accumulate(p, (weights.to(f.dtype) @ f).view(p.shape))
        else:
            offset = 0
            for p in shared:
                n = p.numel()
                _accumulate(p, update[offset : offset + n].reshape(p.shape).to(p.dtype))
                offset += n
        return weights

    def get_extra_state(self) -> dict[str, Any]:
        # Nash-MTL keeps its last solution (the warm start of the next) in numpy arrays.
        if isinstance(self.aggregator, aggregation.NashMTL):
            return {"nash_alpha": torch.as_tensor(self.aggregator.weighting.prvs_alpha)}
        return {}

    def set_extra_state(self, state: Any) -> None:
        if "nash_alpha" in state and isinstance(self.aggregator, aggregation.NashMTL):
            weighting = self.aggregator.weighting
            weighting.prvs_alpha = state["nash_alpha"].numpy()
            weighting.step = 0.0  # rebuild the problem, warm-started from the saved solution

    def extra_repr(self) -> str:
        return f"method={self.method!r}, skip_zero={self.skip_zero}"


class _Capture:
    """The forward hook that hands the shared modules' outputs to the balancer.

    It holds the balancer weakly (a dropped criterion stops capturing) and pickles it strongly,
    so a model pickled with its criterion (Lightning's ``ddp_spawn``) keeps capturing.
    """

    def __init__(self, owner: Gradient) -> None:
        self.owner = weakref.ref(owner)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        balancer = self.owner()
        if balancer is not None and torch.is_grad_enabled():
            balancer._captured.extend(_tensors(output))

    def __getstate__(self) -> dict[str, Any]:
        return {"owner": self.owner()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        owner = state["owner"]
        self.owner = weakref.ref(owner) if owner is not None else (lambda: None)  # type: ignore[assignment]


def _broadcast_from_rank0(shared: list[Tensor], rows: Tensor) -> Tensor:
    """Give every rank rank 0's update and weights (one broadcast): a randomised aggregator
    draws differently on each rank."""
    import torch.distributed as dist

    for p in shared:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in shared if p.grad is not None]
    flat = torch.cat([*(g.reshape(-1).float() for g in grads), rows.float()])
    dist.broadcast(flat, src=0)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat[offset:].to(rows.dtype)


def _backward_with(
    tensors: list[Tensor],
    seeds: list[Tensor],
    features: list[Tensor],
    combined: list[Tensor],
    retain_graph: bool,
) -> None:
    """One ordinary backward of the seeded terms in which the gradient reaching each feature
    tensor is replaced by ``combined``: the heads get their own gradients, the trunk the
    aggregated one."""
    handles = [
        f.register_hook(lambda _grad, g=g: g)  # type: ignore[no-untyped-call]
        for f, g in zip(features, combined)
    ]
    try:
        torch.autograd.backward(tensors, seeds, retain_graph=retain_graph)
    finally:
        for handle in handles:
            handle.remove()


def _refuse_plain_backward(grad: Tensor) -> Tensor:
    raise BalancingError(
        "this criterion uses a gradient balancer, which works through res.backward(); "
        "backpropagating res.total directly would apply the plain weighted sum instead"
    )


def _accumulate(param: Tensor, grad: Tensor) -> None:
    if param.grad is None:
        param.grad = grad.to(param.dtype)
    else:
        param.grad += grad.to(param.dtype)


def _overlap(tensors: list[Tensor], features: list[Tensor]) -> bool:
    """Whether two tensors' graphs share a node before reaching the features."""
    if len(tensors) < 2:
        return False
    stop = {f.grad_fn for f in features}
    owner: dict[Any, int] = {}
    for i, t in enumerate(tensors):
        stack = [t.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in stop or type(node).__name__ == "AccumulateGrad":
                continue
            seen = owner.get(node)
            if seen is not None:
                if seen != i:
                    return True
                continue
            owner[node] = i
            stack.extend(child for child, _ in node.next_functions)
    return False


def _leaves(roots: list[Tensor]) -> list[Tensor]:
    """The trainable leaf tensors the roots depend on, in a stable order."""
    seen: set[Any] = set()
    found: list[Tensor] = []
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, Tensor):
            found.append(variable)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return found
