"""Balancers by name: ``register``, ``available`` and ``create`` (the names config files use)."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar

from torch import nn

from losskit.balancers._gradient import METHODS, Gradient
from losskit.balancers._gradnorm import GradNorm
from losskit.balancers._magnitude import Magnitude
from losskit.balancers._protocol import Balancer
from losskit.balancers._scalarizers import (
    DWA,
    FAMO,
    IMTLL,
    STCH,
    GeometricMean,
    RandomWeights,
    Uncertainty,
)
from losskit.balancers._static import Mean, Sum
from losskit.errors import ConfigError

__all__ = ["BalancerSpec", "available", "check_name", "create", "from_config", "register"]

BalancerSpec: TypeAlias = str | Mapping[str, Any] | Balancer
"""A balancer: a registered name, a table ``{"name": ..., **options}``, or an instance."""

_F = TypeVar("_F", bound=Callable[..., Balancer])

_REGISTRY: dict[str, tuple[Callable[..., Balancer], str]] = {}


def register(name: str, description: str = "") -> Callable[[_F], _F]:
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

    def decorate(factory: _F) -> _F:
        known = _REGISTRY.get(name)
        if known is not None and _qualname(known[0]) != _qualname(factory):
            raise ConfigError(f"a balancer named {name!r} is already registered")
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = (factory, description or (doc[0] if doc else ""))
        return factory

    return decorate


def _qualname(factory: Callable[..., Any]) -> str:
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"


def available() -> dict[str, str]:
    """Every registered name with a one-line description."""
    return {name: description for name, (_, description) in sorted(_REGISTRY.items())}


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
            raise ConfigError(f"a balancer table needs name = one of {sorted(_REGISTRY)}")
        return create(name, **table, **options)
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            close = difflib.get_close_matches(spec, list(_REGISTRY), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(
                f"unknown balancer {spec!r}{hint} (known: {', '.join(sorted(_REGISTRY))})"
            )
        factory = _REGISTRY[spec][0]
        try:
            return factory(**options)
        except TypeError as exc:
            raise ConfigError(f"balancer {spec!r}: bad options {sorted(options)}: {exc}") from exc
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
    """Raise :class:`ConfigError` unless ``spec`` names a registered balancer."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError(
            f"unknown balancer {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))})"
        )


register("sum", "the weighted sum of the terms (default)")(Sum)
register("mean", "the weighted sum divided by the number of enabled terms")(Mean)
register("magnitude", "divide each term by a running estimate of its own magnitude")(Magnitude)
register("uncertainty", "uncertainty weighting: a learned log-variance per key")(Uncertainty)
register("uw", "alias of 'uncertainty'")(Uncertainty)
register("dwa", "Dynamic Weight Average: weights from each key's rate of decrease")(DWA)
register("famo", "FAMO: decrease every term at the same rate (needs update())")(FAMO)
register("imtl_l", "IMTL-L: a learned log-scale per key")(IMTLL)
register("geometric_mean", "the geometric mean of the terms")(GeometricMean)
register("random", "random loss weighting: fresh random weights every call")(RandomWeights)
register("stch", "smooth Tchebycheff scalarisation (mu)")(STCH)
register("gradnorm", "GradNorm: equalise gradient norms at a shared layer (shared, alpha)")(
    GradNorm
)
for _method, (_, _description) in METHODS.items():
    register(_method, f"gradient-level: {_description}")(functools.partial(Gradient, _method))
