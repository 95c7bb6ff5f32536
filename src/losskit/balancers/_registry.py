"""Balancers by name: ``register``, ``available`` and ``create`` (the names config files use).

The functions here are the verbs of :data:`BALANCERS`, a :class:`losskit._registry.Registry`
like every other name table. Each entry has a ``family``, the balancer's level: ``"static"``,
``"loss"`` or ``"gradient"`` (one entry per torchjd aggregator, built by :class:`GradientMethod`).
Built-ins are registered by import path, so nothing here imports torchjd until one is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from torch import nn

from losskit._registry import Registry
from losskit.balancers._protocol import Balancer
from losskit.balancers._shared import Shared
from losskit.errors import ConfigError

if TYPE_CHECKING:
    from torchjd.aggregation import Aggregator

__all__ = [
    "BALANCERS",
    "BalancerSpec",
    "GradientMethod",
    "available",
    "check_name",
    "create",
    "from_config",
    "register",
]

BalancerSpec: TypeAlias = str | Mapping[str, Any] | Balancer
"""A balancer: a registered name, a table ``{"name": ..., **options}``, or an instance."""

_F = TypeVar("_F", bound=Callable[..., Balancer])

BALANCERS: Registry[Balancer] = Registry("balancer", listing="losskit.balancers.available()")
"""Every balancer by name; ``family`` is its level (``static``, ``loss``, ``gradient``)."""


def register(name: str, description: str = "", *, family: str = "custom") -> Callable[[_F], _F]:
    """Register a balancer factory (a class or function returning a balancer) under ``name``.

    Example::

        >>> import losskit as lk
        >>> @lk.balancers.register("halved", "the weighted sum, halved")
        ... class Halved(lk.balancers.BalancerBase):
        ...     def combine(self, losses, weights, keys):
        ...         return (losses * weights).sum() / 2, weights / 2
        >>> "halved" in lk.balancers.available()
        True
    """
    return BALANCERS.register(name, description=description, family=family)


def available() -> dict[str, str]:
    """Every registered name with a one-line description."""
    return BALANCERS.available()


def create(spec: BalancerSpec, **options: Any) -> Balancer:
    """A balancer from a name (with ``options``), a table ``{"name": ..., **options}`` or itself.

    Example::

        >>> import losskit as lk
        >>> lk.balancers.create({"name": "magnitude", "beta": 0.9})
        Magnitude(beta=0.9, warmup=100)
    """
    if isinstance(spec, Mapping):
        table = dict(spec)
        name = table.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(
                f"a balancer table needs name = one of {BALANCERS.names()}, got {name!r}"
            )
        return create(name, **table, **options)
    if isinstance(spec, str):
        return BALANCERS.create(spec, **options)
    if options:
        raise ConfigError("options go with a balancer name, not with an instance")
    if not (callable(getattr(spec, "combine", None)) and callable(getattr(spec, "bind", None))):
        raise ConfigError(
            f"balancer must be a name, a table or a Balancer (bind/combine/step), got {spec!r}"
        )
    return spec


def from_config(spec: str | Mapping[str, Any], model: nn.Module | None = None) -> Balancer:
    """:func:`create` for a config file's ``balancer``: ``shared`` names submodules of ``model``.

    ``shared = "trunk"`` or ``shared = ["encoder", "neck"]`` become those submodules.
    """
    if isinstance(spec, Mapping) and "shared" in spec:
        table = dict(spec)
        paths = table["shared"]
        paths = [paths] if isinstance(paths, str) else list(paths)
        if model is None:
            raise ConfigError("balancer.shared names submodules, but no model was given")
        modules = []
        for path in paths:
            try:
                modules.append(model.get_submodule(path))
            except AttributeError:
                names = [n for n, _ in model.named_children()]
                raise ConfigError(
                    f"balancer.shared: the model has no submodule {path!r}; its children are "
                    f"{names}"
                ) from None
        table["shared"] = modules[0] if len(modules) == 1 else modules
        return create(table)
    return create(spec)


def check_name(spec: str | Mapping[str, Any]) -> None:
    """Raise :class:`~losskit.errors.UnknownNameError` unless ``spec`` names a balancer."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str):
        raise ConfigError(f"a balancer table needs name = one of {BALANCERS.names()}, got {name!r}")
    BALANCERS.resolve(name)


@dataclass(frozen=True)
class GradientMethod:
    """A gradient-level entry: builds ``Gradient(name, shared, ...)`` over a torchjd aggregator.

    Args:
        name: the registered name, which :class:`~losskit.balancers.Gradient` resolves.
        aggregator: the class's name in ``torchjd.aggregation``, or ``"module:Class"`` for an
            aggregator of another module (imported when built).
        defaults: options the aggregator gets unless given.
        per_key_count: the aggregator takes ``n_tasks`` (built once the keys are known).
        random_draws: the aggregator draws random numbers (declared in the balancer's
            :class:`~losskit.balancers.Capabilities`).
    """

    name: str
    aggregator: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    per_key_count: bool = False
    random_draws: bool = False

    def __call__(
        self, shared: Shared | None = None, *, features: Any = None, **options: Any
    ) -> Balancer:
        from losskit.balancers._gradient import Gradient

        return Gradient(self.name, shared, features=features, **options)

    def aggregator_class(self) -> type[Aggregator]:
        """The aggregator's class (imported now)."""
        module, _, name = self.aggregator.rpartition(":")
        cls: type[Aggregator] = getattr(import_module(module or "torchjd.aggregation"), name)
        return cls

    def build(self, n_keys: int, options: Mapping[str, Any]) -> Aggregator:
        """The aggregator with ``options`` over the defaults."""
        kwargs = {**self.defaults, **options}
        if self.per_key_count:
            kwargs["n_tasks"] = n_keys
        return self.aggregator_class()(**kwargs)


def _lazy(
    name: str, path: str, family: str, description: str, aliases: tuple[str, ...] = ()
) -> None:
    BALANCERS.register(
        name,
        f"losskit.balancers.{path}",
        aliases=aliases,
        description=description,
        family=family,
    )


def _gradient(method: GradientMethod, description: str) -> None:
    BALANCERS.register(
        method.name, method, description=f"gradient-level: {description}", family="gradient"
    )


_lazy("sum", "_static:Sum", "static", "the weighted sum of the terms (default)")
_lazy("mean", "_static:Mean", "static", "the weighted sum divided by the number of enabled terms")
_lazy(
    "magnitude",
    "_magnitude:Magnitude",
    "loss",
    "divide each term by a running estimate of its own magnitude",
)
_lazy(
    "uncertainty",
    "_scalarizers:Uncertainty",
    "loss",
    "uncertainty weighting: a learned log-variance per key",
    aliases=("uw",),
)
_lazy(
    "dwa",
    "_scalarizers:DWA",
    "loss",
    "Dynamic Weight Average: weights from each key's rate of decrease",
)
_lazy(
    "famo",
    "_scalarizers:FAMO",
    "loss",
    "FAMO: decrease every term at the same rate (needs update())",
)
_lazy("imtl_l", "_scalarizers:IMTLL", "loss", "IMTL-L: a learned log-scale per key")
_lazy("geometric_mean", "_scalarizers:GeometricMean", "loss", "the geometric mean of the terms")
_lazy(
    "random",
    "_scalarizers:RandomWeights",
    "loss",
    "random loss weighting: fresh random weights every call",
)
_lazy("stch", "_scalarizers:STCH", "loss", "smooth Tchebycheff scalarisation (mu)")
_lazy(
    "gradnorm",
    "_gradnorm:GradNorm",
    "loss",
    "GradNorm: equalise gradient norms at a shared layer (shared, alpha)",
)
_gradient(
    GradientMethod("upgrad", "UPGrad"),
    "UPGrad: project each key's gradient onto the dual cone of all of them, then average",
)
_gradient(
    GradientMethod("mgda", "losskit.balancers._mgda:MGDA"),
    "MGDA: the minimum-norm point of the convex hull of the key gradients",
)
_gradient(
    GradientMethod("pcgrad", "PCGrad", random_draws=True),
    "PCGrad: project away the conflicting components pairwise, in random order",
)
_gradient(
    GradientMethod("cagrad", "CAGrad", {"c": 0.4}),
    "CAGrad: the direction that maximises the worst key's improvement near the mean (c)",
)
_gradient(
    GradientMethod("imtl_g", "IMTLG"),
    "IMTL-G: the update with equal projections on every key's unit gradient",
)
_gradient(
    GradientMethod("aligned_mtl", "AlignedMTL"),
    "Aligned-MTL: align the principal components of the key gradients (stable rank)",
)
_gradient(
    GradientMethod("nash_mtl", "NashMTL", per_key_count=True),
    "Nash-MTL: the bargaining solution of the key gradients (needs ECOS)",
)
_gradient(
    GradientMethod("dualproj", "DualProj"),
    "DualProj: the mean gradient projected onto the dual cone of the key gradients",
)
_gradient(
    GradientMethod("fairgrad", "FairGrad", {"alpha": 1.0}),
    "FairGrad: alpha-fair allocation of the update across keys",
)
_gradient(
    GradientMethod("config", "ConFIG"),
    "ConFIG: a conflict-free direction with equal cosine to every key gradient",
)
_gradient(
    GradientMethod("graddrop", "GradDrop", random_draws=True),
    "GradDrop: randomly drop conflicting gradient signs per coordinate",
)
