"""docs/trainer.md: every python block runs, in order, and prints what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parents[2] / "docs" / "trainer.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def _expected(block: str) -> list[str]:
    """The ``# ...`` lines right after a ``print(...)``: what the page says it prints."""
    lines = block.splitlines()
    shown: list[str] = []
    for i, line in enumerate(lines):
        if (
            line.startswith("# ")
            and i
            and ("print(" in lines[i - 1] or lines[i - 1].startswith("# "))
        ):
            shown.append(line[2:])
    return shown


def test_the_page_has_a_block_per_section() -> None:
    text = PAGE.read_text()
    for section in ("forward", "routes", "accumulate", "checkpoints", "resume", "sinks"):
        assert re.search(rf"^## {section}", text, flags=re.MULTILINE), section
    for word in ("shared_forward", "amp=", "monitor=", "patience=", "resume="):
        assert word in text
    assert len(_blocks()) >= 8


def test_every_block_runs_and_prints_what_the_page_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "trainer_doc"}
    for number, block in enumerate(_blocks()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"docs/trainer.md block {number}", "exec"), namespace)
        assert out.getvalue().splitlines() == _expected(block), f"block {number}:\n{block}"
