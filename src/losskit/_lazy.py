"""Modules imported on first use (private, shared).

torchjd imports cvxpy and scipy (most of a second): the balancers that use it name it through a
:class:`LazyModule`, so ``import losskit`` and a criterion without such a balancer never pay for
it, and an object unpickled in another process (a spawned DDP rank) finds it all the same.

Example::

    >>> math = LazyModule("math")
    >>> math.sqrt(4.0)
    2.0
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule"]


class LazyModule:
    """Stands for the module ``name``, imported when an attribute is first read."""

    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self.__dict__["_name"])

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._module(), attribute)

    def __repr__(self) -> str:
        return f"LazyModule({self.__dict__['_name']!r})"
