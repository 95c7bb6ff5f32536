"""The self-contained HTML report of a run: interactive curves, figures, summary and configuration.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, sinks
    >>> from losskit.report import render
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     for step in range(10):
    ...         tracker.update({"loss": torch.tensor(1.0 / (step + 1))})
    >>> path = render(run)
    >>> page = path.read_text()
    >>> path.name, 'type="application/json" id="losskit-charts"' in page
    ('report.html', True)
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from losskit._io import replace_text
from losskit.report._charts import Chart, asset_text, chart_figure, charts_data
from losskit.report._curves import constant_weights, curve_charts, training_split
from losskit.report._findings import findings_section
from losskit.report._smoothing import auto_smoothing
from losskit.report._summary import SummaryRow, summarize
from losskit.tracking import History, load

__all__ = [
    "chart_controls",
    "figure_html",
    "format_number",
    "page_header",
    "render",
    "slug",
    "write_page",
]

_STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6575; --line: #d9dee7; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: var(--bg); }
header { padding: 1rem 2rem .7rem; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 1.35rem; }
header p { margin: .1rem 0 0; color: var(--muted); font-size: 13px; }
main { padding: .5rem 2rem 3rem; max-width: 1400px; }
section { margin-top: 1.2rem; }
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
figure { margin: 0; background: #fff; border: 1px solid var(--line); padding: .5rem;
         min-width: 0; }
figure img { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; padding: .2rem .3rem 0; }
.note { background: #fff6da; border: 1px solid #ecd58b; padding: .5rem .8rem; }
.muted { color: var(--muted); }
.controls { position: sticky; top: 0; z-index: 5; display: flex; flex-wrap: wrap; gap: .4rem 1rem;
            align-items: center; background: var(--bg); padding: .5rem 0; font-size: 13px; }
.controls input[type=range] { width: 14rem; vertical-align: middle; }
.controls output { font-variant-numeric: tabular-nums; min-width: 2.5em; display: inline-block; }
.chart-bar { display: flex; gap: .8rem; align-items: center; font-size: 13px; padding: 0 .3rem; }
.chart-title { font-weight: 600; margin-right: auto; overflow-wrap: anywhere; }
.chart-plot { min-height: 280px; }
.chart .u-legend { font-size: 12px; background: none; }
.chart .u-legend th, .chart .u-legend td { background: none; border: 0; padding: 1px 2px;
                                           font-weight: 600; }
.chart .u-legend .u-value { font-variant-numeric: tabular-nums; font-weight: 400; }
"""


def render(
    run_dir: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    skip_corrupt: bool = False,
    smoothing: float | None = None,
) -> Path:
    """Write ``report.html`` for the run in ``run_dir`` and return its path.

    One self-contained file: the curves are interactive charts (hover values, zoom and pan,
    legend toggles, a smoothing slider, a linear/log switch) drawn by the uPlot library inlined
    in the page, the other views are PNG images; nothing is fetched, and the page's
    Content-Security-Policy allows only its own inline script and style (by hash). It shows the
    curves first, then a summary of every key per split (final value, best value and its step),
    the linter's findings, the run's facts and ``config.json`` of the run directory when there
    is one. The file is written to a temporary name and renamed, so a reader never sees half a
    report.

    Args:
        output: where to write (default ``run_dir/report.html``).
        skip_corrupt: leave out corrupt log lines instead of raising (see
            :func:`losskit.tracking.load`); the report lists them.
        smoothing: the EMA weight the page opens with (default: chosen from the number of
            points); the page's slider changes it.
    """
    from losskit.report._plots import figures

    run = Path(run_dir)
    history = load(run, skip_corrupt=skip_corrupt)
    target = Path(output) if output is not None else run / "report.html"
    charts = curve_charts(history)
    if smoothing is None:
        split = training_split(history)
        counts = [len(history.series(k, split)) for k in history.keys(split)] if split else []
        smoothing = auto_smoothing(max(counts, default=0))
    sections: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    for index, chart in enumerate(charts):
        sections.setdefault(chart.section, []).append(chart_figure(chart, index))
    for plot in figures(history, smoothing):
        sections.setdefault(plot.section, []).append(
            figure_html(plot.title, plot.figure, plot.caption)
        )
    fixed = constant_weights(history)
    body = [page_header(run), "<main>", _notes(history)]
    if charts:
        body.append(chart_controls())
    for section, items in sections.items():
        note = _constant_note(fixed) if section == "Weights" else ""
        if not items and not note:
            continue
        body.append(f'<section id="{slug(section)}"><h2>{html.escape(section)}</h2>{note}')
        body.append('<div class="grid">' + "".join(items) + "</div></section>")
    if not charts and not any(sections.values()):
        body.append('<section><p class="muted">No values to plot yet.</p></section>')
    body += [
        _summary(_worth_a_row(history, summarize(history), fixed)),
        findings_section(history),
        _facts(run, history),
        _config(run),
        "</main>",
    ]
    write_page(target, f"losskit report: {run.resolve().name}", body, charts, smoothing)
    return target


_SECTIONS = ("Losses", "Weights", "Shares", "Diagnostics", "Optimization")


def _constant_note(fixed: dict[str, float]) -> str:
    if not fixed:
        return ""
    listed = ", ".join(f"{name} = {format_number(value)}" for name, value in fixed.items())
    return f'<p class="muted">Constant weights (not drawn): {html.escape(listed)}.</p>'


def _worth_a_row(
    history: History, rows: Sequence[SummaryRow], fixed: dict[str, float]
) -> list[SummaryRow]:
    """The summary without its empty rows: constant weights (listed above the charts) and the
    weights of the splits that do not train (copies of the training weights)."""
    train = training_split(history)
    return [
        row
        for row in rows
        if not row.key.startswith("weight/")
        or (row.split == train and row.key.removeprefix("weight/") not in fixed)
    ]


def chart_controls() -> str:
    """The page's smoothing slider and a line on how to use the charts."""
    return (
        '<div class="controls"><label for="smoothing">smoothing (EMA weight per step)</label>'
        '<input type="range" id="smoothing" min="0" max="0.99" step="0.01" value="0">'
        '<output id="smoothing-value" for="smoothing">0.00</output>'
        '<span class="muted">hover: values · drag: zoom · shift-drag: pan · ctrl-wheel: zoom · '
        "double-click: reset · click a legend entry: hide or show it</span></div>"
    )


def _hash(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


def _inline(tag: str, text: str) -> str:
    if f"</{tag}" in text.lower():
        raise ValueError(f"an inline <{tag}> must not contain </{tag}")
    return f"<{tag}>{text}</{tag}>"


def write_page(
    target: Path,
    title: str,
    body: Sequence[str],
    charts: Sequence[Chart] = (),
    smoothing: float = 0.0,
) -> None:
    """Write a self-contained page atomically: inline style, images as data URIs and, when
    there are ``charts`` (drawn into the ``chart_figure`` placeholders of ``body``), their data
    and the inlined uPlot and chart scripts.

    The Content-Security-Policy allows nothing but data: images and the page's own inline
    style and scripts, by their SHA-256 hashes.
    """
    style = _STYLE
    scripts: list[str] = []
    tail = ""
    if charts:
        style = asset_text("uPlot.min.css") + _STYLE
        scripts = [asset_text("uPlot.iife.min.js"), asset_text("charts.js")]
        tail = charts_data(charts, smoothing) + "".join(_inline("script", s) for s in scripts)
    policy = f"default-src 'none'; img-src data:; style-src {_hash(style)}"
    if scripts:
        policy += "; script-src " + " ".join(_hash(s) for s in scripts)
    policy += "; base-uri 'none'; form-action 'none'"
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"{_inline('style', style)}</head><body>" + "\n".join(body) + tail + "</body></html>\n"
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
