"""Help screens in plain words: ``CONFIG`` and ``--quiet`` rather than typer's ``{config}``
and ``<bool>`` placeholders.

Typer labels every option with its Python type (``--quiet <bool>``, ``--out <path>``) and
wraps a required argument in braces in the usage line. These command classes name a value by
its option (``--out OUT``), show a flag bare and write arguments in capitals, as most
command-line tools do.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

__all__ = ["PlainCommand", "PlainGroup", "plain_metavars"]


def plain_metavars(ctx: Any, params: Any) -> None:
    """Give each parameter without a metavar a plain one (once; a flag gets none)."""
    for param in params:
        if param.metavar is not None:
            continue
        name = (param.name or "value").upper()
        if param.param_type_name == "argument":
            param.metavar = name
            # The name says what it is; no "<path>" or "<list[Path]>" type column beside it.
            setattr(param, "display_type_rich", _no_type)  # noqa: B010
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        else:
            param.metavar = name


def _no_type(ctx: Any) -> None:
    return None


class PlainCommand(TyperCommand):
    """A typer command whose help and usage line use plain metavars."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        plain_metavars(ctx, self.get_params(ctx))
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar or (param.name or "").upper()
            name += "..." if param.nargs != 1 else ""
            pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain_metavars(ctx, self.get_params(ctx))
        super().format_help(ctx, formatter)


class PlainGroup(TyperGroup):
    """The ``losskit`` group, with its own options (``--version``, ``--help``) shown bare."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain_metavars(ctx, self.get_params(ctx))
        super().format_help(ctx, formatter)
