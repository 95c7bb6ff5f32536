"""The comparative report of a grid: overlaid curves with their spread over seeds, a table of
final and best values, time per step, a ranking that calls nothing different within the
spread, and the linter's findings for every run.

Example::

    >>> from losskit.experiments._report import Spread
    >>> s = Spread.of([1.0, 2.0, 3.0])
    >>> s.mean, s.low, s.high, round(s.std, 3)
    (2.0, 1.0, 3.0, 1.0)
    >>> Spread.of([0.0, 1.0]).overlaps(Spread.of([0.5, 2.0]), "range")
    True
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from losskit._io import check_file_name
from losskit.errors import ConfigError
from losskit.experiments._runner import MANIFEST, is_complete
from losskit.lint import Finding, lint_runs
from losskit.report import (
    PALETTE,
    Chart,
    Series,
    align,
    chart_controls,
    chart_figure,
    findings_table,
    format_number,
    page_header,
    should_log,
    slug,
    write_page,
)
from losskit.tracking import History, load

__all__ = [
    "Comparison",
    "Rank",
    "RankOn",
    "Row",
    "Spread",
    "render_comparison",
    "summarize_grid",
]

Interval = Literal["range", "std", "ci95"]
RankOn = Literal["best", "final"]


# Student's t 0.975 quantiles for 1..30 degrees of freedom; beyond, 1.96 + 2.4 / dof (within 0.2%).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.4 / dof


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation, minimum and maximum of one value over seeds."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of the finite ``values`` (NaN everywhere when none is finite)."""
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        std = statistics.stdev(finite) if len(finite) > 1 else 0.0
        return cls(statistics.fmean(finite), std, min(finite), max(finite), len(finite))

    def interval(self, kind: Interval = "range") -> tuple[float, float]:
        """``[min, max]`` over seeds (``"range"``), ``mean ± std`` (``"std"``), or the 95%
        confidence interval of the mean (``"ci95"``: Student's t with n - 1 degrees of freedom;
        the point itself for one seed).

        Example::

            >>> [round(v, 3) for v in Spread.of([1.0, 2.0, 3.0]).interval("ci95")]
            [-0.484, 4.484]
        """
        if kind == "std":
            return self.mean - self.std, self.mean + self.std
        if kind == "ci95":
            half = _t975(self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else 0.0
            return self.mean - half, self.mean + half
        return self.low, self.high

    def overlaps(self, other: Spread, kind: Interval = "range") -> bool:
        """Whether the two intervals share a point: then the two are not called different."""
        a, b = self.interval(kind), other.interval(kind)
        return a[0] <= b[1] and b[0] <= a[1]

    def text(self) -> str:
        return f"{format_number(self.mean)} ± {format_number(self.std)}"


@dataclass(frozen=True)
class Row:
    """One variant's final and best value of one ``split/key``, over seeds."""

    variant: str
    key: str
    final: Spread
    best: Spread | None


@dataclass(frozen=True)
class Rank:
    """A variant's place: ``tier`` 1 is best; ``ties`` are the variants whose interval overlaps
    its own (not called different from it)."""

    variant: str
    value: Spread
    tier: int
    ties: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """What the report shows, as data."""

    out: Path
    variants: tuple[str, ...]
    labels: dict[str, str]
    seeds: tuple[int, ...]
    rows: tuple[Row, ...]
    step_ms: dict[str, Spread]
    rank_by: str
    mode: Literal["min", "max"]
    interval: Interval
    ranking: tuple[Rank, ...]
    monitored: tuple[str, ...]
    runs: dict[str, tuple[Path, ...]]
    missing: tuple[Path, ...] = ()
    findings: tuple[Finding, ...] = field(default=())

    @property
    def caveat(self) -> str:
        """Why the tiers cannot separate anything, or ``""``: with one seed per variant every
        interval is a single point, so any difference, noise included, makes a new tier.

        Example::

            >>> from pathlib import Path
            >>> one = Comparison(Path("."), (), {}, (0,), (), {}, "val/loss", "min", "range",
            ...                  (), (), {})
            >>> one.caveat.startswith("one seed per variant")
            True
        """
        if len(self.seeds) > 1:
            return ""
        return (
            "one seed per variant: every interval is a single point, so any difference (seed "
            "noise included) makes a new tier; run 3 or more seeds (--seeds 3) to tell an "
            "effect from noise"
        )

    def row(self, variant: str, key: str) -> Row:
        """The row of ``variant`` and ``split/key``."""
        for row in self.rows:
            if row.variant == variant and row.key == key:
                return row
        raise KeyError(f"no row for variant {variant!r} and key {key!r}")


def _higher_is_better(key: str) -> bool:
    return key.split("/", 1)[-1].startswith("metric/")


def _best(history: History, key: str, mode: Literal["min", "max"]) -> float:
    split, _, name = key.partition("/")
    series = history.series(name, split, "epoch") or history.series(name, split, "interval")
    best = series.best(mode)
    return math.nan if best is None else best[1]


def _rank(values: dict[str, Spread], mode: str, interval: Interval) -> tuple[Rank, ...]:
    """Tiers in order of the mean: a variant joins the current tier while its interval overlaps
    the tier leader's; ``ties`` lists every variant whose interval overlaps its own."""
    sign = 1.0 if mode == "min" else -1.0
    order = sorted((v for v in values if values[v].n), key=lambda v: sign * values[v].mean)
    ranks = []
    tier, leader = 0, None
    for name in order:
        if leader is None or not values[name].overlaps(values[leader], interval):
            tier, leader = tier + 1, name
        ties = tuple(o for o in order if o != name and values[name].overlaps(values[o], interval))
        ranks.append(Rank(name, values[name], tier, ties))
    return tuple(ranks)


def summarize_grid(
    out: str | Path,
    *,
    rank_by: str | None = None,
    interval: Interval = "range",
    rank_on: RankOn = "best",
    with_findings: bool = True,
) -> Comparison:
    """Read the grid in ``out`` (its ``compare.json`` and finished runs) into a Comparison.

    ``rank_by`` is a ``split/key`` (default: the base configuration's ``trainer.monitor``);
    each run contributes its best value of it over epochs (in the trainer's ``mode``), or with
    ``rank_on="final"`` its value at the last epoch (a fixed budget, nothing chosen on the
    held-out split: what a table over a test split needs).
    """
    root = Path(out)
    path = root / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{root} holds no {MANIFEST}: run `losskit compare` into it first")
    manifest = json.loads(path.read_text())
    base = manifest["base"]
    monitor, mode = base["trainer"]["monitor"], base["trainer"]["mode"]
    rank_by = rank_by or monitor
    rank_mode: Literal["min", "max"] = (
        mode if rank_by == monitor else ("max" if _higher_is_better(rank_by) else "min")
    )
    variants = tuple(
        check_file_name(f"{path}: variants[].name", v["name"]) for v in manifest["variants"]
    )
    labels = {v["name"]: v["label"] for v in manifest["variants"]}
    seeds = tuple(manifest["seeds"])
    monitored = tuple(k for k, t in base["terms"].items() if t.get("monitor"))
    rows: list[Row] = []
    step_ms: dict[str, Spread] = {}
    ranked: dict[str, Spread] = {}
    runs: dict[str, tuple[Path, ...]] = {}
    missing: list[Path] = []
    for variant in variants:
        folders = [root / variant / f"seed{s}" for s in seeds]
        missing += [f for f in folders if not is_complete(f)]
        done = tuple(f for f in folders if is_complete(f))
        runs[variant] = done
        summaries = [json.loads((f / "summary.json").read_text()) for f in done]
        histories = [load(f) for f in done]
        keys: dict[str, None] = {}
        for summary in summaries:
            for split in ("val", "train"):
                keys.update(dict.fromkeys(f"{split}/{k}" for k in summary["final"][split]))
        for key in keys:
            split, _, name = key.partition("/")
            if name.startswith("weight/"):
                continue
            finals = [s["final"][split].get(name, math.nan) for s in summaries]
            direction: Literal["min", "max"] = "max" if _higher_is_better(key) else "min"
            bests = [_best(h, key, direction) for h in histories]
            rows.append(Row(variant, key, Spread.of(finals), Spread.of(bests)))
        step_ms[variant] = Spread.of(
            [1000.0 * s["seconds"] / s["steps"] for s in summaries if s["steps"]]
        )
        if rank_on == "final":
            split, _, name = rank_by.partition("/")
            values = [float(s["final"][split].get(name, math.nan)) for s in summaries]
        elif rank_by == monitor:
            values = [
                math.nan if s["best_value"] is None else float(s["best_value"]) for s in summaries
            ]
        else:
            values = [_best(h, rank_by, rank_mode) for h in histories]
        ranked[variant] = Spread.of(values)
    findings = tuple(lint_runs(f for v in variants for f in runs[v])) if with_findings else ()
    return Comparison(
        out=root,
        variants=variants,
        labels=labels,
        seeds=seeds,
        rows=tuple(rows),
        step_ms=step_ms,
        rank_by=rank_by,
        mode=rank_mode,
        interval=interval,
        ranking=_rank(ranked, rank_mode, interval),
        monitored=monitored,
        runs=runs,
        missing=tuple(missing),
        findings=findings,
    )


# -- figures ------------------------------------------------------------------------------------
def _seed_curves(histories: Sequence[History], key: str) -> tuple[list[int], list[list[float]]]:
    """The epoch means of ``split/key`` of every seed at the steps all seeds share."""
    split, _, name = key.partition("/")
    series = [h.series(name, split, "epoch") for h in histories]
    series = [s for s in series if s]
    if not series:
        return [], []
    steps = sorted(set.intersection(*(set(s.steps) for s in series)))
    maps = [dict(zip(s.steps, s.values)) for s in series]
    return steps, [[m[step] for m in maps] for step in steps]


def _same(a: Spread | None, b: Spread | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(
        x == y or (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-9 * max(abs(x), abs(y))
        for x, y in zip((a.mean, a.std, a.low, a.high), (b.mean, b.std, b.low, b.high))
    )


def _echoes(c: Comparison) -> set[str]:
    """The ``split/loss/<key>`` rows that only repeat ``split/loss``: a grid with one trained
    term at weight 1, where the total is that term (shown once, as the total)."""
    echoes = set()
    for key in {r.key for r in c.rows}:
        split, _, name = key.partition("/")
        if not name.startswith("loss/") or name.removeprefix("loss/") in c.monitored:
            continue
        pairs = []
        for variant in c.variants:
            try:
                pairs.append((c.row(variant, key), c.row(variant, f"{split}/loss")))
            except KeyError:
                break
        else:
            if pairs and all(_same(a.final, b.final) and _same(a.best, b.best) for a, b in pairs):
                echoes.add(key)
    return echoes


def _distinct(c: Comparison) -> tuple[Finding, ...]:
    """The findings, a finding on ``loss/<key>`` left out where it repeats one on the total
    ``loss`` of the same run, kind and steps and the key's row only echoes the total."""
    echoes = _echoes(c)
    totals = {(f.run, f.kind, f.split, f.start, f.end) for f in c.findings if f.key == "loss"}
    return tuple(
        f
        for f in c.findings
        if not (
            f.key is not None
            and f.key.startswith("loss/")
            and f"{f.split}/{f.key}" in echoes
            and (f.run, f.kind, f.split, f.start, f.end) in totals
        )
    )


def curve_charts(comparison: Comparison) -> list[Chart]:
    """Per ``split/key``: every variant's mean over seeds with its band (range or ±std), the
    variants overlaid in one interactive chart (a legend entry hides a variant and its band)."""
    histories = {v: [load(f) for f in comparison.runs[v]] for v in comparison.variants}
    echoes = _echoes(comparison)
    keys = [k for k in dict.fromkeys(r.key for r in comparison.rows) if k not in echoes]
    band = "min–max" if comparison.interval == "range" else "±1 std"
    caption = (
        f"epoch means; line: mean over seeds, band: {band}; the slider smooths both (0: as logged)"
    )
    charts = []
    for key in keys:
        found: dict[str, tuple[list[int], list[Spread]]] = {}
        for variant in comparison.variants:
            steps, columns = _seed_curves(histories[variant], key)
            if steps:
                found[variant] = (steps, [Spread.of(column) for column in columns])
        if not found:
            continue
        parts: dict[str, tuple[Sequence[int], Sequence[float]]] = {}
        for variant, (steps, spreads) in found.items():
            low, high = zip(*(s.interval(comparison.interval) for s in spreads))
            parts[f"{variant}:mean"] = (steps, [s.mean for s in spreads])
            parts[f"{variant}:low"] = (steps, low)
            parts[f"{variant}:high"] = (steps, high)
        steps, aligned = align(parts)
        series: list[Series] = []
        for variant in found:
            colour = PALETTE[comparison.variants.index(variant) % len(PALETTE)]
            label = comparison.labels[variant]
            series.append(
                Series(label, aligned[f"{variant}:mean"], colour, smooth="replace", points=True)
            )
            lows, highs = aligned[f"{variant}:low"], aligned[f"{variant}:high"]
            series.append(Series(f"{label} (low)", lows, colour, smooth="replace", band="low"))
            series.append(Series(f"{label} (high)", highs, colour, smooth="replace", band="high"))
        drawn = [v for column in aligned.values() for v in column if v is not None]
        charts.append(Chart("Curves", key, steps, series, log=should_log(drawn), caption=caption))
    return charts


# -- page ---------------------------------------------------------------------------------------
def _cell(value: float | None) -> str:
    return f"<td>{format_number(value)}</td>"


def _ranking_section(c: Comparison) -> str:
    band = "min–max over seeds" if c.interval == "range" else "mean ± 1 std"
    head = (
        '<tr><th>tier</th><th class="text">variant</th><th>mean</th><th>std</th><th>min</th>'
        '<th>max</th><th>seeds</th><th class="text">not different from</th></tr>'
    )
    body = "".join(
        f'<tr><td>{r.tier}</td><td class="text">{html.escape(c.labels[r.variant])}</td>'
        f"{_cell(r.value.mean)}{_cell(r.value.std)}{_cell(r.value.low)}{_cell(r.value.high)}"
        f"<td>{r.value.n}</td>"
        f'<td class="text">{html.escape("; ".join(c.labels[t] for t in r.ties)) or "–"}</td>'
        "</tr>"
        for r in c.ranking
    )
    better = "lower" if c.mode == "min" else "higher"
    caveat = f'<p class="caveat"><strong>{html.escape(c.caveat)}.</strong></p>' if c.caveat else ""
    return (
        f'<section id="ranking"><h2>Ranking</h2><p>By the best {html.escape(c.rank_by)} of each '
        f"run ({better} is better). Variants whose intervals ({band}) overlap share a tier "
        "or are listed as not different: with this many seeds the data cannot tell them "
        f"apart.</p>{caveat}<table><thead>{head}</thead><tbody>{body}</tbody></table></section>"
    )


def _table_section(c: Comparison) -> str:
    head = (
        '<tr><th class="text">split/key</th><th class="text">variant</th><th>final mean</th>'
        "<th>± std</th><th>min</th><th>max</th><th>best mean</th><th>± std</th><th>seeds</th>"
        "</tr>"
    )
    echoes = _echoes(c)
    keys = [k for k in dict.fromkeys(r.key for r in c.rows) if k not in echoes]
    body = []
    for key in keys:
        name = key.split("/", 1)[-1].removeprefix("loss/")
        note = " (monitor-only)" if name in c.monitored else ""
        for i, variant in enumerate(c.variants):
            try:
                row = c.row(variant, key)
            except KeyError:
                continue
            best = row.best or Spread.of([])
            cls = ' class="split-start"' if i == 0 else ""
            body.append(
                f'<tr{cls}><td class="text">{html.escape(key + note)}</td>'
                f'<td class="text">{html.escape(c.labels[variant])}</td>'
                f"{_cell(row.final.mean)}{_cell(row.final.std)}{_cell(row.final.low)}"
                f"{_cell(row.final.high)}{_cell(best.mean)}{_cell(best.std)}"
                f"<td>{row.final.n}</td></tr>"
            )
    return (
        '<section id="table"><h2>Final and best values</h2><p>Final: the last epoch of each '
        "run; best: its best epoch (lowest loss, highest metric). Mean and sample standard "
        "deviation over seeds.</p>"
        f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table></section>"
    )


def _timing_section(c: Comparison) -> str:
    body = "".join(
        f'<tr><td class="text">{html.escape(c.labels[v])}</td>{_cell(c.step_ms[v].mean)}'
        f"{_cell(c.step_ms[v].std)}<td>{c.step_ms[v].n}</td></tr>"
        for v in c.variants
    )
    return (
        '<section id="timing"><h2>Time per step</h2><table><thead><tr><th class="text">'
        "variant</th><th>ms per step (mean)</th><th>± std</th><th>seeds</th></tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def _grid_section(c: Comparison) -> str:
    manifest: dict[str, Any] = json.loads((c.out / MANIFEST).read_text())
    vary = "; ".join(f"{p} = {json.dumps(v)}" for p, v in manifest["vary"].items())
    facts = [
        ("varied", vary or "nothing"),
        ("variants", str(len(c.variants))),
        ("seeds", ", ".join(map(str, c.seeds))),
        (
            "runs complete",
            f"{sum(len(r) for r in c.runs.values())} of {len(c.variants) * len(c.seeds)}",
        ),
    ]
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    note = (
        f'<p class="note">{len(c.missing)} run(s) are not finished; run the same compare again '
        "to complete them.</p>"
        if c.missing
        else ""
    )
    return f'<section id="grid"><h2>Grid</h2>{note}<dl class="facts">{items}</dl></section>'


def _findings_section(c: Comparison) -> str:
    findings = _distinct(c)
    if not findings:
        body = '<p class="muted">No findings in any run.</p>'
    else:
        body = findings_table(findings, with_run=True)
    return f'<section id="findings"><h2>Findings</h2>{body}</section>'


def render_comparison(comparison: Comparison, output: str | Path | None = None) -> Path:
    """Write the self-contained ``compare.html`` (default in the grid's folder)."""
    c = comparison
    target = Path(output) if output is not None else c.out / "compare.html"
    charts = curve_charts(c)
    figures = "".join(chart_figure(chart, index) for index, chart in enumerate(charts))
    body = [
        page_header(c.out).replace("losskit report", "losskit comparison", 1),
        "<main>",
        _grid_section(c),
        _ranking_section(c),
        _table_section(c),
        _timing_section(c),
        chart_controls() if charts else "",
        f'<section id="{slug("Curves")}"><h2>Curves</h2><div class="grid">{figures}</div>'
        "</section>",
        _findings_section(c),
        "</main>",
    ]
    write_page(target, f"losskit comparison: {c.out.resolve().name}", body, charts)
    return target
