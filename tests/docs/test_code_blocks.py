"""Every ```python block of every docs page runs, in order, and prints what the page says.

A page's blocks share one namespace and run in a fresh working directory. A ``# ...`` line right
after a ``print(...)`` (or after another such line) is the output the page promises: the block's
printed lines must equal those lines, and a block that promises nothing must print nothing.
Blocks that are not meant to run are fenced as another language (```text, ```sh, ```toml).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
# docs/gen/ holds the scripts that write the generated reference and gallery pages (at build
# time; their examples are tested where they come from).
GENERATED = ("gen", "reference", "gallery")
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def _pages() -> list[Path]:
    return sorted(
        page for page in DOCS.rglob("*.md") if page.relative_to(DOCS).parts[0] not in GENERATED
    )


def blocks(page: Path) -> list[str]:
    """The page's ```python blocks, in order."""
    return FENCE.findall(page.read_text())


def expected(block: str) -> list[str]:
    """The ``# ...`` lines right after a ``print(...)``: what the page says it prints."""
    shown: list[str] = []
    in_output = False
    for line in block.splitlines():
        if in_output and line.startswith("# "):
            shown.append(line[2:])
        else:
            in_output = "print(" in line
    return shown


PAGES = [page for page in _pages() if blocks(page)]


def test_the_pages_hold_the_tested_blocks() -> None:
    counted = {page.relative_to(DOCS).as_posix(): len(blocks(page)) for page in PAGES}
    for page in ("trainer.md", "getting_started.md", "guides/pitfalls.md"):
        assert counted.get(page, 0) >= 1, (page, counted)
    assert sum(counted.values()) >= 90, counted


def test_expected_reads_the_lines_after_a_print() -> None:
    block = "x = 1\nprint(x)\n# 1\n# 2\ny = 2  # not output\n# a comment, not output\n"
    assert expected(block) == ["1", "2"]


def test_the_trainer_page_has_a_block_per_section() -> None:
    text = (DOCS / "trainer.md").read_text()
    for section in ("forward", "routes", "accumulate", "checkpoints", "resume", "sinks"):
        assert re.search(rf"^## {section}", text, flags=re.MULTILINE), section
    for word in ("shared_forward", "amp=", "monitor=", "patience=", "resume="):
        assert word in text
    assert len(blocks(DOCS / "trainer.md")) >= 8


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> Iterator[None]:
    """A page that builds an ``Accelerator`` sets Accelerate's process-wide state; a later test
    asking for another precision would find it taken. Accelerate's own tests reset it so."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_every_block_runs_and_prints_what_the_page_says(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = page.relative_to(DOCS).as_posix()
    namespace: dict[str, object] = {"__name__": "docs_page"}
    for number, block in enumerate(blocks(page)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"docs/{name} block {number}", "exec"), namespace)
        assert out.getvalue().splitlines() == expected(block), f"docs/{name} block {number}"
