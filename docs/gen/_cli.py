"""The CLI reference: every command of ``losskit``, its arguments and options, from typer."""

from __future__ import annotations

from typing import Any

import typer.main
from _text import cell

from losskit.cli import app


def _option(param: Any) -> str:
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    value = param.default
    shown = "" if value is None or param.required or callable(value) else f"`{value!r}`"
    descriptor = getattr(param, "type_descriptor", None)
    hint = getattr(descriptor, "annotation", None)
    kind = getattr(hint, "__name__", str(hint or "")).replace("NoneType", "None")
    return f"| {names} | {cell(kind)} | {shown} | {cell(getattr(param, 'help', '') or '')} |"


def _metavar(param: Any) -> str:
    return str(param.metavar or param.name.upper())


def _command(path: str, command: Any) -> list[str]:
    lines = [f"## `{path}`", "", cell(command.help or ""), ""]
    shown = [p for p in command.params if not getattr(p, "hidden", False)]
    arguments = [p for p in shown if p.param_type_name == "argument"]
    options = [p for p in shown if p.param_type_name == "option"]
    usage = " ".join([path, "[OPTIONS]", *(_metavar(p) for p in arguments)])
    lines += ["```text", usage, "```", ""]
    if arguments:
        lines += ["| Argument | Description |", "|---|---|"]
        lines += [f"| `{_metavar(p)}` | {cell(getattr(p, 'help', '') or '')} |" for p in arguments]
        lines.append("")
    if options:
        lines += ["| Option | Type | Default | Description |", "|---|---|---|---|"]
        lines += [_option(p) for p in options]
        lines.append("")
    if command.epilog:
        lines += [cell(command.epilog), ""]
    return lines


def commands() -> dict[str, Any]:
    """Every command by its full path (``losskit run``), subcommands of groups included."""
    found: dict[str, Any] = {}

    def walk(path: str, command: Any) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            found[path] = command
            return
        for name in sorted(subcommands):
            walk(f"{path} {name}", subcommands[name])

    walk("losskit", typer.main.get_command(app))
    return found


def page() -> str:
    """The whole CLI reference."""
    root = typer.main.get_command(app)
    found = commands()
    lines = [
        "# CLI reference",
        "",
        f"The `losskit` command: {cell(root.help or '')} Generated from the command "
        f"definitions ({len(found)} commands); `losskit COMMAND --help` prints the same.",
        "",
        "| Command | What it does |",
        "|---|---|",
    ]
    for path, command in found.items():
        anchor = path.replace(" ", "-")
        lines.append(f"| [`{path}`](#{anchor}) | {cell(command.get_short_help_str(120))} |")
    lines.append("")
    for path, command in found.items():
        lines += _command(path, command)
    if root.epilog:
        lines += ["## Exit status", "", cell(root.epilog), ""]
    return "\n".join(lines)


def pages() -> dict[str, str]:
    """The CLI reference by its path under docs/."""
    return {"reference/cli.md": page()}
