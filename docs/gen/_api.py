"""The API reference: one mkdocstrings page per public module of losskit."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import losskit

# The command line has its own page (the CLI reference), generated from the commands.
_ELSEWHERE = frozenset({"losskit.cli", "losskit.__main__"})


def _public(module: ModuleType) -> list[str]:
    """Public submodules of ``module``: no leading underscore, one level down."""
    path = getattr(module, "__path__", None)
    if path is None:
        return []
    names = (f"{module.__name__}.{info.name}" for info in pkgutil.iter_modules(path))
    return sorted(n for n in names if not n.rsplit(".", 1)[1].startswith("_"))


def modules() -> list[str]:
    """Every public module of losskit (two levels deep), the top level first."""
    found = ["losskit"]
    for name in _public(losskit):
        if name in _ELSEWHERE:
            continue
        found.append(name)
        found += [n for n in _public(importlib.import_module(name)) if n not in _ELSEWHERE]
    return found


def page_path(module: str) -> str:
    """Where the API page of ``module`` lives, relative to docs/."""
    short = module.removeprefix("losskit").lstrip(".") or "losskit"
    return f"reference/api/{short}.md"


def _top_level_members() -> list[str]:
    """The core names of the top level (its subpackages have their own pages)."""
    return [n for n in losskit.__all__ if not n.startswith("_") and n not in set(_subpackages())]


def _subpackages() -> list[str]:
    return [n.removeprefix("losskit.") for n in _public(losskit)]


def render(module: str) -> str:
    """The page: the module's docstring and its public members, by mkdocstrings."""
    lines = [f"::: {module}", "    options:", "      heading_level: 1"]
    if module == "losskit":
        lines += ["      members:", *(f"        - {n}" for n in _top_level_members())]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """Every API page by its path under docs/."""
    return {page_path(m): render(m) for m in modules()}
