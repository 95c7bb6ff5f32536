"""The recipe gallery: every ``examples/*.py`` run small at build time and rendered as a page.

An example joins the gallery by being in examples/: its module docstring is the page's intro
(first line: the title), and a module-level ``GALLERY = [...]`` lists the command-line arguments
of its small run. The script runs as ``python examples/<stem>.py <GALLERY>`` in a scratch
directory, on one thread with no GPU visible; what it prints is the page's output, and the
HTML reports and PNG figures it writes there are copied beside the page and embedded.

Nothing here knows about MkDocs: :func:`build` hands every file to a ``write(path, data)``
callback (``docs/gen/gallery.py`` passes one that writes through mkdocs-gen-files).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FIGURES = (".html", ".png", ".svg")
# The console sink's step lines carry wall-clock times; the per-epoch lines stay.
_PROGRESS = re.compile(r"^\S+ step \d+/\d+ \(\d+%\), ETA ")
_CODE = re.compile(r"(<script\b.*?</script>|<style\b.*?</style>)", re.DOTALL | re.IGNORECASE)
log = logging.getLogger("mkdocs.plugins.losskit.gallery")


class GalleryError(RuntimeError):
    """An example the gallery cannot render: no ``GALLERY`` arguments, or its run failed."""


@dataclass(frozen=True)
class Recipe:
    """One example script, read without running it."""

    stem: str
    path: Path
    title: str
    intro: str
    args: tuple[str, ...]
    source: str  # the script less its docstring and its GALLERY lines

    @property
    def command(self) -> str:
        return " ".join(["python", f"examples/{self.path.name}", *self.args])


@dataclass(frozen=True)
class Outcome:
    """What a recipe's small run printed and wrote (``files``: name -> content)."""

    recipe: Recipe
    output: str
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # user + system time of the script and its child processes


def discover(examples: Path = EXAMPLES) -> list[Recipe]:
    """Every ``*.py`` in ``examples``, sorted by name."""
    return [read_recipe(path) for path in sorted(examples.glob("*.py"))]


def read_recipe(path: Path) -> Recipe:
    """Parse ``path`` for its docstring and its ``GALLERY`` arguments."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    doc = ast.get_docstring(tree)
    if not doc:
        raise GalleryError(f"{path.name}: no module docstring; the gallery takes its intro there")
    title, _, rest = doc.partition("\n")
    args, gallery_lines = _gallery_args(path, tree)
    hidden = set(gallery_lines)
    first = tree.body[0]
    hidden.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines = text.splitlines()
    kept = [line for number, line in enumerate(lines, 1) if number not in hidden]
    source = re.sub(r"\n{3,}", "\n\n\n", "\n".join(kept).strip("\n")) + "\n"
    return Recipe(path.stem, path, title.strip().rstrip("."), rest.strip(), args, source)


def _gallery_args(path: Path, tree: ast.Module) -> tuple[tuple[str, ...], list[int]]:
    """The ``GALLERY`` list and the lines it (and the comments just above it) takes."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "GALLERY" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = None
            if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
                raise GalleryError(
                    f"{path.name}: GALLERY must be a literal list of command-line arguments "
                    f'(strings), e.g. GALLERY = ["--epochs", "2"]; got {ast.unparse(node.value)}'
                )
            lines = list(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            source = path.read_text(encoding="utf-8").splitlines()
            above = node.lineno - 1
            while above >= 1 and source[above - 1].lstrip().startswith("#"):
                lines.append(above)
                above -= 1
            return tuple(value), lines
    raise GalleryError(
        f"{path.name}: no GALLERY = [...] at module level. The recipe gallery runs every example "
        "at build time with these command-line arguments, sized to take seconds: e.g. GALLERY = "
        '["--epochs", "2"] (see docs/gen/_gallery_recipes.py)'
    )


def run(recipes: Sequence[Recipe], timeout: float = 300.0, warm: bool = True) -> list[Outcome]:
    """Run every recipe's small run, each in its own scratch directory; what each printed and
    wrote.

    The scripts run one after the other through ``_gallery_runner.py``: one process imports
    torch, then forks a child per script that runs it as ``python examples/<stem>.py <args>``
    would, on one thread with no GPU visible. ``warm=False`` skips the imports before forking
    (for scripts that need no torch).
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "CUDA_VISIBLE_DEVICES": "",  # the same numbers on every machine that builds the docs
        "MPLBACKEND": "Agg",
    }
    with tempfile.TemporaryDirectory(prefix="gallery-") as tmp:
        work = Path(tmp)
        jobs = []
        for r in recipes:
            scratch = work / r.stem / "scratch"
            scratch.mkdir(parents=True)
            job = {"stem": r.stem, "path": str(r.path), "args": list(r.args), "timeout": timeout}
            job |= {"scratch": str(scratch), "stdout": str(work / r.stem / "stdout")}
            jobs.append(job | {"stderr": str(work / r.stem / "stderr")})
        (work / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
        runner = Path(__file__).with_name("_gallery_runner.py")
        done = subprocess.run(
            [sys.executable, str(runner), str(work / "jobs.json"), *([] if warm else ["--cold"])],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout * max(len(jobs), 1) + 120,
            check=False,
        )
        ended = {e["stem"]: e for e in map(json.loads, done.stdout.splitlines())}
        return [_outcome(r, ended.get(r.stem), work / r.stem, done, timeout) for r in recipes]


def _outcome(
    recipe: Recipe,
    ended: dict[str, Any] | None,
    work: Path,
    runner: subprocess.CompletedProcess[str],
    timeout: float,
) -> Outcome:
    """One recipe's outcome from the runner's line about it and the files it left in ``work``."""
    if ended is None:
        raise GalleryError(
            f"{recipe.path.name}: the gallery's runner stopped before it "
            f"(exit {runner.returncode}):\n{_tail(runner.stderr)}"
        )
    if ended["signal"] == signal.SIGALRM:
        raise GalleryError(
            f"{recipe.path.name}: `{recipe.command}` ran over {timeout:.0f} s; make its "
            "GALLERY arguments smaller"
        )
    if ended["code"] != 0:
        stderr = (work / "stderr").read_text(encoding="utf-8", errors="replace")
        raise GalleryError(
            f"{recipe.path.name}: `{recipe.command}` exited with {ended['code']}:\n{_tail(stderr)}"
        )
    scratch = work / "scratch"
    stdout = (work / "stdout").read_text(encoding="utf-8", errors="replace")
    output = "\n".join(
        _relative(line, scratch) for line in stdout.splitlines() if not _PROGRESS.match(line)
    )
    files = _figures(scratch)
    return Outcome(recipe, output.strip("\n"), files, ended["seconds"], ended["cpu_seconds"])


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _figures(scratch: Path) -> dict[str, bytes]:
    """The reports and images under ``scratch``, by file name (parent folders prefixed on a
    clash)."""
    found = sorted(p for p in scratch.rglob("*") if p.is_file() and p.suffix in FIGURES)
    names = [p.name for p in found]
    if len(set(names)) < len(names):
        names = ["-".join(p.relative_to(scratch).parts) for p in found]
    return {name: _file(p, scratch) for name, p in zip(names, found)}


def _file(path: Path, scratch: Path) -> bytes:
    """The file's bytes; in an HTML page, the scratch folder left out of the paths it shows.

    Only text outside ``<script>`` and ``<style>`` changes: a report's Content-Security-Policy
    allows its inline script and style by their hashes.
    """
    data = path.read_bytes()
    if path.suffix != ".html":
        return data
    parts = _CODE.split(data.decode("utf-8"))
    # re.split with a group alternates text and the code it captured
    text = (part if i % 2 else _relative(part, scratch) for i, part in enumerate(parts))
    return "".join(text).encode("utf-8")


def _relative(text: str, scratch: Path) -> str:
    """``text`` with the scratch folder's paths made relative to it."""
    return text.replace(f"{scratch}{os.sep}", "").replace(str(scratch), ".")


def page(outcome: Outcome, use_directory_urls: bool = True) -> str:
    """The Markdown page of one recipe; its files live in the folder ``<stem>/`` beside it."""
    r = outcome.recipe
    # raw HTML is not rewritten by MkDocs: the iframe's address is relative to the page's URL
    base = "" if use_directory_urls else f"{r.stem}/"
    parts = [f"# {r.title}\n", _markdown(r.intro), "\n## Output\n"]
    parts.append(
        f"Printed by a small run when this site was built, `{r.command}` (the arguments are the "
        "script's `GALLERY` list):\n"
    )
    parts.append(f"```text\n{outcome.output or '(nothing printed)'}\n```\n")
    reports = [n for n in outcome.files if n.endswith(".html")]
    images = [n for n in outcome.files if not n.endswith(".html")]
    for name in reports:
        parts.append(f"\n## {'Report' if name == 'report.html' else f'Report: {name}'}\n")
        parts.append(
            f"The run's `{name}`, as written (one self-contained file; "
            f"[open it on its own]({r.stem}/{name})):\n"
        )
        parts.append(
            f'<iframe class="losskit-report" src="{base}{name}" title="{r.stem}: {name}" '
            'loading="lazy" style="width: 100%; height: 720px; border: 1px solid #ddd">'
            "</iframe>\n"
        )
    if images:
        parts.append("\n## Figures\n")
        parts.extend(f"![{r.stem}: {name}]({r.stem}/{name})\n" for name in images)
    parts.append(f"\n## Source\n\n`examples/{r.path.name}`:\n\n```python\n{r.source}```\n")
    return "\n".join(parts)


def _markdown(docstring: str) -> str:
    """reST's double backticks as Markdown's single ones; indented blocks stay code blocks."""
    return re.sub(r"``(.+?)``", r"`\1`", docstring) + "\n"


def index(recipes: Sequence[Recipe]) -> str:
    """The gallery's front page: a card per recipe and how to add one."""
    cards = "".join(
        f"-   **[{r.stem}]({r.stem}.md)**\n\n    ---\n\n    {r.title}.\n\n" for r in recipes
    )
    return f"""# Recipes

Every script in `examples/`, run when this site was built: each page shows the script's
intro, what a small run printed, the report and figures it wrote, and its source.

<div class="grid cards" markdown>

{cards}</div>

## How a script becomes a page

The gallery is generated by `docs/gen/gallery.py` at every `make docs`: a new file in
`examples/` gets a page by being there. Each script needs

- a module docstring: its first line is the page's title, the rest its introduction;
- a module-level `GALLERY` list, the command-line arguments of its small run, sized so the
  run takes seconds (every example together stays under about a minute on one core):

    ```python
    GALLERY = ["--epochs", "3", "--limit", "256"]
    ```

The script runs as `python examples/<name>.py <GALLERY...>` in an empty scratch directory on
one CPU thread, with no GPU visible and its own seeds, so a page shows the same numbers
wherever it is built. What it prints to standard output becomes the page's output (the
console's per-step progress lines, which carry timings, are left out); every `.html` report
and `.png` or `.svg` figure it writes under the scratch directory (e.g. `runs/<name>/`) is
copied beside the page and shown. A script that fails or runs over five minutes fails the
build, with its error.
"""


def summary(recipes: Iterable[Recipe]) -> str:
    """The literate-nav SUMMARY.md of the gallery."""
    return "* [Recipes](index.md)\n" + "".join(f"* [{r.stem}]({r.stem}.md)\n" for r in recipes)


def build(
    write: Callable[[str, bytes], None],
    examples: Path = EXAMPLES,
    use_directory_urls: bool = True,
    warm: bool = True,
) -> list[Outcome]:
    """Run every recipe and hand each file of the gallery to ``write(path, data)``; paths are
    relative to the docs folder (``gallery/...``)."""
    recipes = discover(examples)
    started, cpu = time.perf_counter(), _children_cpu()
    outcomes = run(recipes, warm=warm)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    for outcome in outcomes:
        recipe = outcome.recipe
        log.info(
            "gallery: %s ran in %.1f s (%.1f s of CPU)",
            recipe.command,
            outcome.seconds,
            outcome.cpu_seconds,
        )
        write(f"gallery/{recipe.stem}.md", page(outcome, use_directory_urls).encode())
        for name, data in outcome.files.items():
            write(f"gallery/{recipe.stem}/{name}", data)
    write("gallery/index.md", index(recipes).encode())
    write("gallery/SUMMARY.md", summary(recipes).encode())
    log.info("gallery: %d recipes ran in %.1f s (%.1f s of CPU)", len(outcomes), wall, cpu)
    return outcomes


def _children_cpu() -> float:
    """User and system time of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
