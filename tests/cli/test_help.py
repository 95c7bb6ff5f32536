"""Every command's --help: 80 columns, no type placeholders, exit codes documented."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from losskit.cli import app

runner = CliRunner()
COMMANDS = [
    info.name or (info.callback.__name__ if info.callback else "")
    for info in app.registered_commands
]
WIDE = {"COLUMNS": "80", "TERM": "dumb"}


def test_every_command_is_in_the_suite() -> None:
    assert {"demo", "run", "losses", "recommend", "report", "doctor", "lint"} <= set(COMMANDS)


@pytest.mark.parametrize(
    "args", [[], *[[c] for c in COMMANDS]], ids=lambda a: a[0] if a else "losskit"
)
def test_help_fits_80_columns_without_placeholders(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines
    assert max(len(line) for line in lines) <= 80, result.output
    for placeholder in ("<bool>", "<path>", "<str>", "<int>", "<list", "{"):
        assert placeholder not in result.output, (placeholder, result.output)
    usage = next(line for line in lines if "Usage:" in line)
    assert "[OPTIONS]" in usage


def test_arguments_are_named_in_capitals() -> None:
    result = runner.invoke(app, ["run", "--help"], env=WIDE)
    assert "run [OPTIONS] CONFIG" in result.output
    lint = runner.invoke(app, ["lint", "--help"], env=WIDE)
    assert "lint [OPTIONS] RUN_DIRS..." in lint.output


def test_the_exit_codes_are_documented() -> None:
    result = runner.invoke(app, ["--help"], env=WIDE)
    text = " ".join(result.output.split())
    assert "Exit status: 0 ok; 1 findings" in text
    assert "2 usage or input error" in text
