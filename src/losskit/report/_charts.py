"""Interactive charts of the report: the data of each chart, and the page parts that draw them.

A :class:`Chart` holds one x axis (steps) and its :class:`Series`. The page embeds every chart
as JSON in a ``<script type="application/json">`` block and draws it in the browser with
`uPlot <https://github.com/leeoniya/uPlot>`_ (MIT; shipped in ``losskit/report/assets`` and
inlined, nothing is fetched): hover values, drag to zoom, shift-drag or the wheel to pan and
zoom, a legend entry toggles its series, one smoothing slider for the whole page and a
linear/log switch on each chart. Labels reach the page as text only, never as HTML.

Example::

    >>> from losskit.report import Chart, Series, chart_figure
    >>> chart = Chart("Losses", "loss", (1, 2, 3), (Series("train", (3.0, 2.0, 1.5)),))
    >>> chart.payload()["series"][0]["y"]
    [3.0, 2.0, 1.5]
    >>> 'class="chart"' in chart_figure(chart, 0)
    True
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Literal

__all__ = [
    "PALETTE",
    "Chart",
    "Series",
    "align",
    "asset_text",
    "chart_figure",
    "charts_data",
    "should_log",
    "thin",
]

# matplotlib's ten-colour cycle ("tab10"), so the charts and the static figures agree.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_DECADES = 2.0  # a log scale at first once the values span this many decades
_DIGITS = 7  # significant digits kept in the page (float32 holds about seven)
MAX_POINTS = 5000  # steps drawn per chart; a longer run is drawn at every k-th step

Smooth = Literal["none", "overlay", "replace"]
Band = Literal["low", "high"]


@dataclass(frozen=True)
class Series:
    """One line of a chart: its values at the chart's steps (``None`` where it has none).

    Args:
        smooth: ``"overlay"`` draws the raw values faint with their EMA on top, ``"replace"``
            draws only the EMA, ``"none"`` the values as they are. The page's slider sets the
            EMA's weight per step: a series with a value every k steps (logged so, or thinned
            by :func:`thin`) is smoothed with the weight to the power k per value.
        points: draw a marker at each value (sparse series such as epoch means).
        band: ``"low"`` / ``"high"``: the lower or upper edge of a band filled around the
            nearest series before it that is not a band (which toggles the band with it).
    """

    label: str
    values: Sequence[float | None]
    colour: str = PALETTE[0]
    smooth: Smooth = "none"
    points: bool = False
    band: Band | None = None


@dataclass(frozen=True)
class Chart:
    """One interactive chart: a title in a section, steps along x and the series drawn."""

    section: str
    title: str
    steps: Sequence[int]
    series: Sequence[Series]
    ylabel: str = "value"
    log: bool = False
    caption: str = ""

    def __post_init__(self) -> None:
        for series in self.series:
            if len(series.values) != len(self.steps):
                raise ValueError(
                    f"chart {self.title!r}: series {series.label!r} has {len(series.values)} "
                    f"values for {len(self.steps)} steps; expected one value (or None) per step"
                )

    def payload(self) -> dict[str, Any]:
        """The chart as JSON-ready data (non-finite values become ``None``)."""
        return {
            "title": self.title,
            "ylabel": self.ylabel,
            "log": self.log,
            "x": list(self.steps),
            "series": [
                {
                    "label": s.label,
                    "colour": s.colour,
                    "smooth": s.smooth,
                    "points": s.points,
                    "band": s.band,
                    "y": [_number(v) for v in s.values],
                }
                for s in self.series
            ],
        }


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{_DIGITS}g}")


def align(
    columns: Mapping[str, tuple[Sequence[int], Sequence[float]]],
) -> tuple[list[int], dict[str, list[float | None]]]:
    """Put series logged at different steps on one axis: the union of their steps, ``None``
    where a series has no value.

    Example::

        >>> from losskit.report import align
        >>> align({"train": ([1, 2, 3], [5.0, 4.0, 3.0]), "val": ([3], [3.5])})
        ([1, 2, 3], {'train': [5.0, 4.0, 3.0], 'val': [None, None, 3.5]})
    """
    steps = sorted({step for xs, _ in columns.values() for step in xs})
    out: dict[str, list[float | None]] = {}
    for name, (xs, ys) in columns.items():
        found = dict(zip(xs, ys))
        out[name] = [found.get(step) for step in steps]
    return steps, out


def thin(chart: Chart, limit: int = MAX_POINTS) -> Chart:
    """``chart`` with at most about ``limit`` steps: every k-th step, the last one, and every
    step where a series drawn with markers (epoch means) has a value; the caption says so.

    The page's smoothing stays per step: it raises the slider's weight to the power k for
    a series drawn at every k-th step.

    Example::

        >>> from losskit.report import Chart, Series, thin
        >>> chart = Chart("Losses", "loss", range(1, 11), (Series("train", [1.0] * 10),))
        >>> small = thin(chart, limit=4)
        >>> list(small.steps), small.caption
        ([1, 4, 7, 10], 'one step in 3 drawn (4 of 10)')
    """
    count = len(chart.steps)
    if count <= limit:
        return chart
    stride = math.ceil(count / limit)
    marked = [s.values for s in chart.series if s.points]
    keep = [
        i
        for i in range(count)
        if i % stride == 0 or i == count - 1 or any(v[i] is not None for v in marked)
    ]
    series = tuple(replace(s, values=[s.values[i] for i in keep]) for s in chart.series)
    note = f"one step in {stride} drawn ({len(keep)} of {count})"
    caption = f"{chart.caption}; {note}" if chart.caption else note
    return replace(chart, steps=[chart.steps[i] for i in keep], series=series, caption=caption)


def should_log(values: Sequence[float | None]) -> bool:
    """Whether a chart opens on a log scale: positive values spanning two decades or more."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and math.log10(max(finite) / min(finite)) >= _DECADES


def chart_figure(chart: Chart, index: int) -> str:
    """The ``<figure>`` the page's script draws chart number ``index`` into."""
    note = f"<figcaption>{html.escape(chart.caption)}</figcaption>" if chart.caption else ""
    return (
        f'<figure class="chart" data-chart="{index}" aria-label="{html.escape(chart.title)}">'
        f'<div class="chart-bar"><span class="chart-title">{html.escape(chart.title)}</span>'
        '<label><input type="checkbox" class="chart-log"> log scale</label>'
        '<button type="button" class="chart-reset">reset zoom</button></div>'
        f'<div class="chart-plot"></div>{note}</figure>'
    )


def charts_data(charts: Sequence[Chart], smoothing: float) -> str:
    """The JSON block the page's script reads: every chart and the slider's first weight.

    ``<``, ``>`` and ``&`` are written as JSON escapes, so no label can close the block.
    """
    data = {"smoothing": smoothing, "charts": [c.payload() for c in charts]}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="losskit-charts">{text}</script>'


def asset_text(name: str) -> str:
    """The text of a file in ``losskit/report/assets`` (shipped with the package)."""
    return (resources.files("losskit.report") / "assets" / name).read_text("utf-8")
