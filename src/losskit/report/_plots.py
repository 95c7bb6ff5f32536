"""The report's static figures, drawn with matplotlib's object API (no pyplot, no global state).

The curves are interactive charts (:mod:`losskit.report._curves`); the views drawn here are
the stacked shares and the gradient-conflict heatmaps. Every function takes a
:class:`~losskit.tracking.History` and returns ``matplotlib`` figures, or nothing when the log
lacks what the figure shows; :func:`figures` gathers them all.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, load, sinks
    >>> from losskit.report import figures
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     for step in range(20):
    ...         tracker.update({"loss/a": torch.tensor(1.0 / (step + 1)),
    ...                         "loss/b": torch.tensor(0.5),
    ...                         "weight/a": torch.tensor(1.0), "weight/b": torch.tensor(2.0)})
    >>> [(plot.section, plot.title) for plot in figures(load(run))]
    [('Shares', 'share of the total')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from losskit.errors import MissingDependencyError
from losskit.report._curves import training_split
from losskit.report._smoothing import auto_smoothing, ema
from losskit.tracking import History

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Plot",
    "conflict_history",
    "conflict_matrix",
    "figures",
    "literal",
    "loss_shares",
    "new_figure",
    "palette_colour",
    "style_axes",
]

_MAX_DRAWN = 4000  # raw points drawn per curve; the smoothing still sees every point


@dataclass(frozen=True)
class Plot:
    """One figure of the report, with the section it belongs to and a title."""

    section: str
    title: str
    figure: Figure
    caption: str = ""


def new_figure(width: float = 6.4, height: float = 3.6) -> Figure:
    """A blank matplotlib figure of the report's layout (imports matplotlib on first use)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "the report's plots need matplotlib, which is not installed: pip install matplotlib"
        ) from exc
    return Figure(figsize=(width, height), layout="constrained")


def literal(text: str) -> str:
    """``text`` escaped so that matplotlib draws it as written, never as mathtext.

    Every string that comes from a user (a key, a split, a variant, a case name) goes through
    this before it reaches a title, label, legend or tick: matplotlib reads text between two
    ``$`` as mathtext, so ``loss/$$`` would fail to draw and ``$x$`` would be typeset. Each
    ``$`` becomes ``\\$``, which matplotlib draws as ``$`` (and nothing else in plain text is
    special to it).

    Example::

        >>> print(literal("loss/$$"))
        loss/\\$\\$
    """
    return text.replace("$", r"\$")


def palette_colour(index: int) -> str:
    """The colour of the ``index``-th series, from matplotlib's ten-colour cycle.

    Example::

        >>> palette_colour(0), palette_colour(12)
        ('C0', 'C2')
    """
    return f"C{index % 10}"


def _thin(steps: Sequence[int], values: Sequence[float]) -> tuple[list[int], list[float]]:
    stride = max(1, math.ceil(len(steps) / _MAX_DRAWN))
    return list(steps[::stride]), list(values[::stride])


def style_axes(ax: Axes, title: str, ylabel: str) -> None:
    """Title, axis labels and grid of a report figure (steps along x); ``title`` and ``ylabel``
    are drawn as written (see :func:`literal`)."""
    ax.set_title(literal(title), fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel(literal(ylabel))
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)


def _aligned(
    history: History, keys: Sequence[str], split: str
) -> tuple[list[int], dict[str, list[float]]]:
    """The steps at which every one of ``keys`` has a point, and their values there."""
    series = {k: history.series(k, split, "step") for k in keys}
    maps = {k: dict(zip(s.steps, s.values)) for k, s in series.items()}
    steps = sorted(set.intersection(*(set(m) for m in maps.values()))) if maps else []
    return steps, {k: [maps[k][s] for s in steps] for k in keys}


def loss_shares(history: History, smoothing: float | None = None) -> list[Plot]:
    """Each key's share of the total: stacked areas of ``weight × loss / Σ weight × loss``.

    Contributions are smoothed like the loss curves before they are normalised. When a
    contribution is negative, shares are of the absolute contributions (the title says so).
    """
    split = training_split(history)
    if split is None:
        return []
    names = [
        k.removeprefix("loss/")
        for k in history.keys(split)
        if k.startswith("loss/") and f"weight/{k.removeprefix('loss/')}" in history.keys(split)
    ]
    if not names:
        return []
    wanted = [f"loss/{n}" for n in names] + [f"weight/{n}" for n in names]
    steps, values = _aligned(history, wanted, split)
    if len(steps) < 2:
        return []
    parts = {n: [w * v for w, v in zip(values[f"weight/{n}"], values[f"loss/{n}"])] for n in names}
    negative = any(v < 0 for part in parts.values() for v in part)
    weight = auto_smoothing(len(steps)) if smoothing is None else smoothing
    smooth = {n: ema([abs(v) for v in part], weight) for n, part in parts.items()}
    totals = [sum(column) for column in zip(*smooth.values())]
    keep = [i for i, t in enumerate(totals) if math.isfinite(t) and t > 0]
    if len(keep) < 2:
        return []
    shares = [[smooth[n][i] / totals[i] for i in keep] for n in names]
    x = [steps[i] for i in keep]
    stride = max(1, math.ceil(len(x) / _MAX_DRAWN))
    figure = new_figure()
    ax = figure.subplots()
    ax.stackplot(
        x[::stride],
        *[s[::stride] for s in shares],
        labels=[literal(n) for n in names],
        colors=[palette_colour(i) for i in range(len(names))],
        alpha=0.85,
    )
    ax.set_ylim(0, 1)
    ax.set_xlim(x[0], x[-1])
    what = "|weight × loss|" if negative else "weight × loss"
    style_axes(ax, f"share of the total ({split})", f"{what} / total")
    figure.legend(fontsize=8, frameon=False, loc="outside right upper")
    return [Plot("Shares", "share of the total", figure, f"smoothed with EMA {weight:.2f}")]


def conflict_matrix(history: History) -> list[Plot]:
    """Cosine similarity of the keys' gradients (``cos/<a>/<b>``) at the latest step logged,
    drawn only when the log holds them; negative cells are conflicting keys."""
    pairs: dict[tuple[str, str], float] = {}
    for split in history.splits():
        for key in history.keys(split):
            parts = key.split("/")
            if len(parts) != 3 or parts[0] != "cos":
                continue
            series = history.series(key, split, "step") or history.series(key, split, "interval")
            if series.last is not None:
                pairs[(parts[1], parts[2])] = series.last
    if not pairs:
        return []
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    size = len(names)
    matrix = [[1.0 if i == j else math.nan for j in range(size)] for i in range(size)]
    for (a, b), value in pairs.items():
        i, j = names.index(a), names.index(b)
        matrix[i][j] = matrix[j][i] = value
    side = max(3.6, min(7.0, 1.6 + 0.5 * size))
    figure = new_figure(side * 16 / 9, side)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="RdBu", vmin=-1.0, vmax=1.0)
    shown = [literal(n) for n in names]
    ax.set_xticks(range(size), shown, rotation=45, ha="right")
    ax.set_yticks(range(size), shown)
    for i in range(size):
        for j in range(size):
            if math.isfinite(matrix[i][j]):
                colour = "white" if abs(matrix[i][j]) > 0.6 else "black"
                ax.text(
                    j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", fontsize=8, color=colour
                )
    ax.set_title("gradient cosine between keys (latest)", fontsize=11)
    figure.colorbar(image, ax=ax, shrink=0.9, label="cosine")
    return [Plot("Diagnostics", "conflict matrix", figure)]


def _cosine_series(history: History) -> dict[tuple[str, str], tuple[dict[int, float], str]]:
    """Every logged ``cos/<a>/<b>``: its values by step (or by interval) and the split."""
    found: dict[tuple[str, str], tuple[dict[int, float], str]] = {}
    for split in history.splits():
        for key in history.keys(split):
            parts = key.split("/")
            if len(parts) != 3 or parts[0] != "cos" or (parts[1], parts[2]) in found:
                continue
            series = history.series(key, split, "step") or history.series(key, split, "interval")
            if series:
                found[(parts[1], parts[2])] = (dict(zip(series.steps, series.values)), split)
    return found


def conflict_history(history: History) -> list[Plot]:
    """Each pair's gradient cosine (``cos/<a>/<b>``) against the step, as a heatmap (one row
    per pair, one column per step logged); drawn when the log holds two steps or more."""
    pairs = _cosine_series(history)
    steps = sorted({step for values, _ in pairs.values() for step in values})
    if len(steps) < 2:
        return []
    stride = max(1, math.ceil(len(steps) / 400))  # at most 400 columns drawn
    shown = steps[::stride]
    labels = [f"{a} / {b}" for a, b in pairs]
    matrix = [[values.get(step, math.nan) for step in shown] for values, _ in pairs.values()]
    figure = new_figure(7.2, max(2.4, min(7.0, 1.4 + 0.35 * len(labels))))
    ax = figure.subplots()
    image = ax.imshow(
        matrix,
        cmap="RdBu",
        vmin=-1.0,
        vmax=1.0,
        aspect="auto",
        interpolation="nearest",
        extent=(shown[0] - 0.5, shown[-1] + 0.5, len(labels) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(labels)), [literal(label) for label in labels])
    ax.set_xlabel("step")
    ax.set_title("gradient cosine between keys over training", fontsize=11)
    figure.colorbar(image, ax=ax, shrink=0.9, label="cosine")
    caption = "red: the pair's gradients conflict (cosine < 0); blue: they agree"
    return [Plot("Diagnostics", "conflicts over time", figure, caption)]


def figures(history: History, smoothing: float | None = None) -> list[Plot]:
    """Every static figure the log supports, in report order."""
    return [
        *loss_shares(history, smoothing),
        *conflict_matrix(history),
        *conflict_history(history),
    ]
