"""What ``import losskit`` and the ``losskit`` command import: heavy dependencies only on use,
no torch for ``--help``; the 0.1 top-level names still resolve, with a DeprecationWarning.

Each check runs in a fresh interpreter, since this one has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import losskit
from losskit.cli import app

HEAVY = ("torchjd", "cvxpy", "matplotlib", "pydantic", "rich", "typer")


def _modules_after(code: str) -> set[str]:
    """The top-level modules loaded once ``code`` ran (also when it ends in SystemExit)."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES' + "
        "json.dumps(sorted({m.split('.')[0] for m in sys.modules})) + '\\n'))\n" + code
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    line = next(s for s in done.stderr.splitlines() if s.startswith("MODULES"))
    return set(json.loads(line.removeprefix("MODULES")))


@pytest.mark.parametrize(
    "code",
    [
        "import losskit",
        "import losskit as lk; lk.Criterion, lk.Term, lk.LossResult, lk.losses, lk.balancers",
        "import losskit as lk; lk.engine, lk.tracking, lk.report, lk.lint, lk.diagnostics",
        "import losskit as lk; lk.experiments, lk.benchmarking, lk.evaluation, lk.data",
    ],
)
def test_heavy_dependencies_are_imported_on_use_only(code: str) -> None:
    assert _modules_after(code) & set(HEAVY) == set()


def test_import_losskit_alone_does_not_import_torch() -> None:
    assert "torch" not in _modules_after("import losskit")


def _commands() -> list[str]:
    return sorted({c.name or c.callback.__name__ for c in app.registered_commands if c.callback})


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in _commands())])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code = f"import sys; sys.argv = ['losskit', *{argv!r}]\nfrom losskit.cli import main\nmain()"
    assert "torch" not in _modules_after(code)


MOVED = {
    "Trainer": "losskit.engine",
    "FitSummary": "losskit.engine",
    "seed_everything": "losskit.engine",
    "Tracker": "losskit.tracking",
    "sinks": "losskit.tracking",
    "bench": "losskit.benchmarking",
    "diagnose": "losskit.diagnostics",
    "gradient_health": "losskit.diagnostics",
    "evaluate": "losskit.evaluation",
    "compare": "losskit.experiments",
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_old_top_level_names_warn_and_resolve(name: str) -> None:
    package = __import__(MOVED[name], fromlist=[name])
    with pytest.warns(DeprecationWarning, match=f"losskit.{name} moved to {MOVED[name]}"):
        value = getattr(losskit, name)
    assert value is getattr(package, name)


def test_core_and_subpackages_resolve_and_are_listed() -> None:
    for name in losskit.__all__:
        assert getattr(losskit, name) is not None
    assert set(losskit.__all__) <= set(dir(losskit))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = losskit.nope  # type: ignore[attr-defined]
