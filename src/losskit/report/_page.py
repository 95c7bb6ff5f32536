"""The self-contained HTML report of a run: configuration, summary table and figures.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, sinks
    >>> from losskit.report import render
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     for step in range(10):
    ...         tracker.update({"loss": torch.tensor(1.0 / (step + 1))})
    >>> path = render(run)
    >>> path.name, "data:image/png;base64," in path.read_text()
    ('report.html', True)
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from losskit._io import replace_text
from losskit.report._findings import findings_section
from losskit.report._summary import SummaryRow, summarize
from losskit.tracking import History, load

__all__ = ["figure_html", "format_number", "page_header", "render", "slug", "write_page"]

# The page may load nothing: images are data: URIs, styles inline, no scripts.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6575; --line: #d9dee7; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: var(--bg); }
header { padding: 1.4rem 2rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 1.45rem; }
header p { margin: .2rem 0 0; color: var(--muted); }
main { padding: 1rem 2rem 3rem; max-width: 1400px; }
section { margin-top: 1.6rem; }
h2 { font-size: 1.15rem; margin: 0 0 .6rem; border-bottom: 1px solid var(--line);
     padding-bottom: .3rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1.2rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
pre { background: #fff; border: 1px solid var(--line); padding: .8rem 1rem; overflow: auto;
      font-size: 13px; max-height: 28rem; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .8rem; border-bottom: 1px solid var(--line); text-align: right; }
th { background: #eef1f5; font-weight: 600; }
td.text, th.text { text-align: left; }
tr.split-start td { border-top: 2px solid #b9c1ce; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1rem; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); padding: .5rem; }
figure img { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; padding: .2rem .3rem 0; }
.note { background: #fff6da; border: 1px solid #ecd58b; padding: .5rem .8rem; }
.muted { color: var(--muted); }
"""


def render(
    run_dir: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    skip_corrupt: bool = False,
    smoothing: float | None = None,
) -> Path:
    """Write ``report.html`` for the run in ``run_dir`` and return its path.

    One self-contained file: inline CSS, figures as base64 PNG, no script and nothing fetched
    (its Content-Security-Policy forbids it). It shows ``config.json`` of the run directory when
    there is one, a summary of every key per split (final value, best value and its step) and
    the figures of :func:`losskit.report.figures`. The file is written to a temporary name and
    renamed, so a reader never sees half a report.

    Args:
        output: where to write (default ``run_dir/report.html``).
        skip_corrupt: leave out corrupt log lines instead of raising (see
            :func:`losskit.tracking.load`); the report lists them.
        smoothing: the EMA weight of the curves (default: chosen from the number of points).
    """
    from losskit.report._plots import figures

    run = Path(run_dir)
    history = load(run, skip_corrupt=skip_corrupt)
    target = Path(output) if output is not None else run / "report.html"
    plots = figures(history, smoothing)
    sections: dict[str, list[str]] = {}
    for plot in plots:
        sections.setdefault(plot.section, []).append(
            figure_html(plot.title, plot.figure, plot.caption)
        )
    body = [
        page_header(run),
        "<main>",
        _notes(history),
        _facts(run, history),
        _config(run),
        _summary(summarize(history)),
        findings_section(history),
    ]
    for section, items in sections.items():
        body.append(f'<section id="{slug(section)}"><h2>{html.escape(section)}</h2>')
        body.append('<div class="grid">' + "".join(items) + "</div></section>")
    if not plots:
        body.append('<section><p class="muted">No values to plot yet.</p></section>')
    body.append("</main>")
    write_page(target, f"losskit report: {run.resolve().name}", body)
    return target


def write_page(target: Path, title: str, body: Sequence[str]) -> None:
    """Write a self-contained page (inline style, images as data URIs) atomically."""
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
    replace_text(target, page)


def slug(text: str) -> str:
    """An HTML id made of ``text`` (lower case, other characters as dashes).

    Example::

        >>> slug("Loss shares")
        'loss-shares'
    """
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def figure_html(title: str, figure: object, caption: str) -> str:
    """A ``<figure>`` holding ``figure`` (a matplotlib Figure) as an inline PNG."""
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    dpi = 110
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    width, height = (round(v * dpi) for v in figure.get_size_inches())
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    note = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(title)}" '
        f'width="{width}" height="{height}">{note}</figure>'
    )


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc).astimezone()
    return moment.isoformat(sep=" ", timespec="seconds")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def page_header(run: Path) -> str:
    """The page's header: the run folder's name and path, and when the page was made."""
    now = _when(datetime.datetime.now().timestamp())
    return (
        f"<header><h1>losskit report: {html.escape(run.resolve().name)}</h1>"
        f"<p>{html.escape(str(run.resolve()))} · generated {html.escape(now)}</p></header>"
    )


def _notes(history: History) -> str:
    notes = []
    if history.truncated:
        notes.append(
            "The log's last line was unfinished (the run was interrupted while writing); it is "
            "left out."
        )
    if history.skipped:
        lines = ", ".join(map(str, history.skipped))
        notes.append(f"Corrupt log lines left out: {html.escape(lines)}.")
    return "".join(f'<p class="note">{note}</p>' for note in notes)


def _facts(run: Path, history: History) -> str:
    records = history.records
    epochs = {r.epoch for r in records if r.kind == "epoch"}
    facts: list[tuple[str, str]] = [
        ("log", str(history.path.name)),
        ("steps", str(history.last_step)),
        ("epochs completed", str(len(epochs))),
        ("time tracked", _duration(history.elapsed)),
        ("splits", ", ".join(history.splits()) or "none"),
        ("processes", str(max((r.world for r in records), default=1))),
        ("records", str(len(records))),
    ]
    if records:
        facts.append(("first record", _when(min(r.time for r in records))))
        facts.append(("last record", _when(max(r.time for r in records))))
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    return f'<section id="run"><h2>Run</h2><dl class="facts">{items}</dl></section>'


def _config(run: Path) -> str:
    path = run / "config.json"
    if not path.is_file():
        return (
            '<section id="configuration"><h2>Configuration</h2><p class="muted">No config.json '
            "in the run directory.</p></section>"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        shown = json.dumps(json.loads(text), indent=2, sort_keys=True)
        note = ""
    except ValueError as exc:
        shown = text
        note = f'<p class="note">config.json is not valid JSON ({html.escape(str(exc))}).</p>'
    return (
        f'<section id="configuration"><h2>Configuration</h2>{note}'
        f"<pre>{html.escape(shown)}</pre></section>"
    )


def format_number(value: float | None) -> str:
    """A value as the report's tables show it (four significant digits, a dash for none).

    Example::

        >>> format_number(3.14159), format_number(None)
        ('3.142', '–')
    """
    return "–" if value is None else f"{value:.4g}"


def _summary(rows: Sequence[SummaryRow]) -> str:
    if not rows:
        return (
            '<section id="summary"><h2>Summary</h2><p class="muted">Nothing logged.</p></section>'
        )
    head = (
        '<tr><th class="text">split</th><th class="text">key</th><th>final</th><th>best</th>'
        '<th>best at step</th><th>last step</th><th>values</th><th class="text">of</th></tr>'
    )
    body = []
    previous = None
    for row in rows:
        cls = ' class="split-start"' if previous is not None and row.split != previous else ""
        previous = row.split
        body.append(
            f'<tr{cls}><td class="text">{html.escape(row.split)}</td>'
            f'<td class="text">{html.escape(row.key)}</td><td>{format_number(row.final)}</td>'
            f"<td>{format_number(row.best)}</td>"
            f"<td>{'–' if row.best_step is None else row.best_step}</td>"
            f"<td>{row.last_step}</td><td>{row.values}</td>"
            f'<td class="text">{html.escape(row.source)} means</td></tr>'
        )
    return (
        '<section id="summary"><h2>Summary</h2><table><thead>'
        f"{head}</thead><tbody>{''.join(body)}</tbody></table></section>"
    )
