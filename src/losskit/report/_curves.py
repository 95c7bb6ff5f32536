"""The run report's interactive charts, built from a :class:`~losskit.tracking.History`.

One chart per loss key and per metric with every split overlaid, one of the weights that change
(constant weights are listed, not drawn), one of the per-key gradient norms when they are
logged, and the optimization's: learning rates, the gradient norm before clipping, step time.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, load, sinks
    >>> from losskit.report import curve_charts
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     for step in range(20):
    ...         tracker.update({"loss": torch.tensor(1.0 / (step + 1)),
    ...                         "weight/a": torch.tensor(1.0), "weight/b": torch.tensor(step)})
    >>> [(chart.section, chart.title) for chart in curve_charts(load(run))]
    [('Losses', 'loss'), ('Weights', 'weight of every key that changes')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from losskit.report._charts import PALETTE, Chart, Series, align, should_log, thin
from losskit.tracking import History

__all__ = [
    "advances",
    "constant_weights",
    "curve_charts",
    "gradient_norm_charts",
    "loss_charts",
    "optimization_charts",
    "training_split",
    "weight_charts",
]


def advances(history: History, split: str) -> bool:
    """Whether ``split`` is logged at advancing steps (training), not all at one step per
    interval (validation): some interval of it spans several steps, or it is named "train"."""
    spans = [r.steps for r in history.records if r.split == split and r.steps]
    if any(len(set(steps)) > 1 for steps in spans):
        return True
    return split == "train" and sum(len(steps) for steps in spans) > 1


def training_split(history: History) -> str | None:
    """The first split logged at advancing steps (else the first split, or None)."""
    for split in history.splits():
        if advances(history, split):
            return split
    return history.splits()[0] if history.splits() else None


def _split_series(
    history: History, key: str, split: str
) -> tuple[str, Sequence[int], Sequence[float], bool]:
    """The label, steps and values of one split's curve of ``key``, and whether it is per step."""
    points = history.series(key, split, "step")
    if len(points) > 1 and advances(history, split):
        return split, points.steps, points.values, True
    coarse = history.series(key, split, "epoch") or history.series(key, split, "interval")
    kind = "epoch" if coarse.kind == "epoch" else "interval"
    return f"{split} ({kind} mean)", coarse.steps, coarse.values, False


def _split_charts(history: History, keys: Sequence[str], section: str) -> list[Chart]:
    """One chart per key, every split overlaid (see :func:`loss_charts`)."""
    charts = []
    for key in keys:
        found = {}
        for index, split in enumerate(history.splits()):
            label, steps, values, per_step = _split_series(history, key, split)
            if steps:
                found[label] = (steps, values, per_step, PALETTE[index % len(PALETTE)])
        if not found:
            continue
        steps, columns = align({label: (s, v) for label, (s, v, _, _) in found.items()})
        series = [
            Series(
                label,
                columns[label],
                colour,
                smooth="overlay" if per_step else "none",
                points=not per_step,
            )
            for label, (_, _, per_step, colour) in found.items()
        ]
        drawn = [v for column in columns.values() for v in column if v is not None]
        charts.append(Chart(section, key, steps, series, log=should_log(drawn)))
    return charts


def loss_charts(history: History) -> list[Chart]:
    """One chart per loss key (``loss`` and ``loss/<key>``), every split overlaid, then one per
    metric (``metric/<name>``, usually validation only), beside the losses.

    A split logged at advancing steps (training) is drawn raw and faint with its EMA on top;
    the others (validation) as their epoch means, or interval means without epochs, with a
    marker per value. A chart opens on a log scale when its values span two decades.
    """
    keys = history.keys(split=None)
    losses = [k for k in keys if k == "loss" or k.startswith("loss/")]
    metrics = [k for k in keys if k.startswith("metric/")]
    return [*_split_charts(history, losses, "Losses"), *_split_charts(history, metrics, "Losses")]


#: What every training step logs besides the losses (see the Trainer), one chart per prefix.
_OPTIMIZATION = (
    ("lr/", "learning rate", "lr"),
    ("total_grad_norm/", "gradient norm before clipping", "norm"),
    ("speed/", "step time and throughput", "value"),
)


def optimization_charts(history: History) -> list[Chart]:
    """Learning rates, the gradient norm before clipping and the step time, when logged."""
    split = training_split(history)
    charts = []
    for prefix, title, ylabel in _OPTIMIZATION if split else ():
        keys = [k for k in history.keys(split) if k.startswith(prefix)]
        if not keys:
            continue
        steps, columns = align({k: _per_step(history, k, split or "") for k in keys})
        series = [
            Series(key.removeprefix(prefix), columns[key], PALETTE[index % len(PALETTE)])
            for index, key in enumerate(keys)
        ]
        drawn = [v for column in columns.values() for v in column if v is not None]
        log = should_log(drawn)
        charts.append(Chart("Optimization", title, steps, series, ylabel=ylabel, log=log))
    return charts


def _per_step(history: History, key: str, split: str) -> tuple[Sequence[int], Sequence[float]]:
    series = history.series(key, split, "step") or history.series(key, split, "interval")
    return series.steps, series.values


def constant_weights(history: History) -> dict[str, float]:
    """The keys whose weight (``weight/<key>``) never changed in training, with that weight."""
    split = training_split(history)
    found = {}
    for key in history.keys(split) if split else ():
        if not key.startswith("weight/"):
            continue
        values = {v for v in _per_step(history, key, split or "")[1] if math.isfinite(v)}
        if len(values) == 1:
            found[key.removeprefix("weight/")] = values.pop()
    return found


def weight_charts(history: History) -> list[Chart]:
    """The weights (``weight/<key>``) that change over the training steps, one line per key."""
    split = training_split(history)
    fixed = constant_weights(history)
    keys = [
        k
        for k in (history.keys(split) if split else ())
        if k.startswith("weight/") and k.removeprefix("weight/") not in fixed
    ]
    if split is None or not keys:
        return []
    steps, columns = align({k: _per_step(history, k, split) for k in keys})
    series = [
        Series(key.removeprefix("weight/"), columns[key], PALETTE[index % len(PALETTE)])
        for index, key in enumerate(keys)
    ]
    title = "weight of every key that changes"
    return [Chart("Weights", title, steps, series, ylabel="weight", caption=f"split {split}")]


def gradient_norm_charts(history: History) -> list[Chart]:
    """Per-key gradient norms (``grad_norm/<key>``), smoothed, when the log holds them."""
    split = training_split(history)
    keys = [k for k in history.keys(split) if k.startswith("grad_norm/")] if split else []
    if split is None or not keys:
        return []
    steps, columns = align({k: _per_step(history, k, split) for k in keys})
    series = [
        Series(
            key.removeprefix("grad_norm/"),
            columns[key],
            PALETTE[index % len(PALETTE)],
            smooth="replace",
        )
        for index, key in enumerate(keys)
    ]
    drawn = [v for column in columns.values() for v in column if v is not None]
    caption = "smoothed with the page's EMA weight per step"
    return [
        Chart(
            "Diagnostics",
            "gradient norms",
            steps,
            series,
            ylabel="norm",
            log=should_log(drawn),
            caption=caption,
        )
    ]


def curve_charts(history: History) -> list[Chart]:
    """Every interactive chart the log supports, in report order."""
    charts = [
        *loss_charts(history),
        *weight_charts(history),
        *gradient_norm_charts(history),
        *optimization_charts(history),
    ]
    return [thin(chart) for chart in charts]
