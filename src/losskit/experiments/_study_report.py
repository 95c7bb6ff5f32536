"""The study report of a tune: ranking, the objective over trials, the Pareto front, parameter
importances, and the pruned trials with their reasons (one self-contained page, ``study.html``).

Importances are Optuna's PED-ANOVA (numpy and scipy only; fANOVA would need scikit-learn); a
study too small or too uniform for them says why instead.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any

from losskit.experiments._storage import optuna_module, spec
from losskit.report import (
    Chart,
    Series,
    chart_controls,
    chart_figure,
    figure_html,
    format_number,
    literal,
    new_figure,
    page_header,
    palette_colour,
    style_axes,
    write_page,
)

__all__ = ["best_trials", "importances", "over_trials_chart", "render_study"]


def _state() -> Any:
    return optuna_module().trial.TrialState


def best_trials(study: Any) -> list[Any]:
    """The best complete trial, or the Pareto front ordered by the first objective."""
    complete = study.get_trials(deepcopy=False, states=(_state().COMPLETE,))
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    sign = 1 if study.directions[0].name == "MINIMIZE" else -1
    return sorted(study.best_trials, key=lambda t: sign * t.values[0])


def importances(study: Any) -> tuple[dict[str, float], str]:
    """Each parameter's importance for the first objective, or ``({}, why not)``."""
    optuna = optuna_module()
    complete = study.get_trials(deepcopy=False, states=(_state().COMPLETE,))
    if len(complete) < 4:
        return {}, f"{len(complete)} complete trial(s): importances need at least 4"
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        sign = 1.0 if study.directions[0].name == "MINIMIZE" else -1.0  # it ranks low values
        with warnings.catch_warnings():  # its note on low targets: the sign handles it
            warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")
            found = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t: sign * t.values[0]
            )
    except (ImportError, ValueError, RuntimeError) as exc:
        return {}, f"not computed: {exc}"
    return dict(found), ""


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _params(t: Any) -> str:
    return html.escape(
        ", ".join(
            f"{k}={format_number(v) if isinstance(v, float) else v}" for k, v in t.params.items()
        )
    )


def _ranking(study: Any, names: list[str]) -> str:
    complete = study.get_trials(deepcopy=False, states=(_state().COMPLETE,))
    sign = 1 if study.directions[0].name == "MINIMIZE" else -1
    ranked = sorted(complete, key=lambda t: sign * t.values[0])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["rank", "trial", *names, "params"])
    rows = [
        _row(
            [str(i + 1), html.escape(t.user_attrs.get("key", str(t.number)))]
            + [format_number(v) for v in t.values]
            + [_params(t)]
        )
        for i, t in enumerate(ranked)
    ]
    body = (
        f"<table><tr>{head}</tr>{''.join(rows)}</table>"
        if rows
        else ('<p class="muted">No complete trial yet.</p>')
    )
    return f'<section id="ranking"><h2>Ranking</h2>{body}</section>'


def over_trials_chart(study: Any, names: list[str]) -> Chart | None:
    """The first objective over the trials, interactive: each complete trial's value, each
    pruned trial's last reported value, and the best so far (None before any complete trial)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == _state().COMPLETE]
    pruned = [t for t in trials if t.state == _state().PRUNED and t.intermediate_values]
    if not complete:
        return None
    numbers = sorted({t.number for t in (*complete, *pruned)})
    at = {n: i for i, n in enumerate(numbers)}
    done: list[float | None] = [None] * len(numbers)
    stopped: list[float | None] = [None] * len(numbers)
    best: list[float | None] = [None] * len(numbers)
    for t in complete:
        done[at[t.number]] = t.values[0]
    for t in pruned:
        stopped[at[t.number]] = t.intermediate_values[max(t.intermediate_values)]
    pick = min if study.directions[0].name == "MINIMIZE" else max
    so_far: float | None = None
    for i, value in enumerate(done):
        if value is not None:
            so_far = value if so_far is None else pick(so_far, value)
        best[i] = so_far
    series = [Series("complete", done, palette_colour(0), points=True)]
    if pruned:
        series.append(Series("pruned (last value)", stopped, palette_colour(3), points=True))
    series.append(Series("best so far", best, palette_colour(1)))
    caption = "each complete trial's final value, pruned trials' last value, the best so far"
    return Chart("Objective over trials", names[0], numbers, series, caption=caption)


def _over_trials(chart: Chart | None) -> str:
    if chart is None:
        return ""
    return (
        '<section id="objective"><h2>Objective over trials</h2>'
        + chart_controls()
        + '<div class="grid">'
        + chart_figure(chart, 0)
        + "</div></section>"
    )


def _pareto(study: Any, names: list[str]) -> str:
    if len(names) < 2:
        return (
            '<section id="pareto"><h2>Pareto front</h2><p class="muted">One objective: the '
            "ranking above is the whole answer.</p></section>"
        )
    complete = study.get_trials(deepcopy=False, states=(_state().COMPLETE,))
    front = {t.number for t in best_trials(study)}
    figure = new_figure(5.6, 4.2)
    ax = figure.subplots()
    others = [t for t in complete if t.number not in front]
    ax.plot(
        [t.values[0] for t in others],
        [t.values[1] for t in others],
        "o",
        color="#999999",
        label="dominated",
    )
    on = [t for t in complete if t.number in front]
    ax.plot(
        [t.values[0] for t in on],
        [t.values[1] for t in on],
        "o",
        color=palette_colour(0),
        label="Pareto front",
    )
    style_axes(ax, "Pareto front", literal(names[1]))
    ax.set_xlabel(literal(names[0]))
    figure.legend(fontsize=7, frameon=False, loc="outside lower center", ncols=2)
    rows = "".join(
        _row(
            [html.escape(t.user_attrs.get("key", str(t.number)))]
            + [format_number(v) for v in t.values]
            + [_params(t)]
        )
        for t in best_trials(study)
    )
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["trial", *names, "params"])
    return (
        '<section id="pareto"><h2>Pareto front</h2>'
        + figure_html("Pareto front", figure, "the first two objectives")
        + f"<table><tr>{head}</tr>{rows}</table></section>"
    )


def _importances(study: Any) -> str:
    found, why = importances(study)
    if not found:
        body = f'<p class="muted">{html.escape(why)}</p>'
    else:
        body = (
            "<table><tr><th>parameter</th><th>importance</th></tr>"
            + "".join(_row([html.escape(k), format_number(v)]) for k, v in found.items())
            + "</table>"
        )
    return (
        '<section id="importances"><h2>Parameter importances</h2>'
        '<p class="muted">PED-ANOVA on the first objective.</p>' + body + "</section>"
    )


def _stopped(study: Any) -> str:
    state = _state()
    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == state.PRUNED]
    failed = [t for t in trials if t.state == state.FAIL and "error" in t.user_attrs]
    rows = "".join(
        _row(
            [
                html.escape(t.user_attrs.get("key", str(t.number))),
                "pruned",
                str(t.user_attrs.get("steps", "")),
                html.escape(str(t.user_attrs.get("pruned_by", "objective pruner"))),
                _params(t),
            ]
        )
        for t in pruned
    ) + "".join(
        _row(
            [
                html.escape(t.user_attrs.get("key", str(t.number))),
                "failed",
                "",
                html.escape(str(t.user_attrs["error"])),
                _params(t),
            ]
        )
        for t in failed
    )
    if not rows:
        body = '<p class="muted">No trial was pruned or failed.</p>'
    else:
        body = (
            "<table><tr><th>trial</th><th>state</th><th>steps</th><th>reason</th>"
            f"<th>params</th></tr>{rows}</table>"
        )
    return f'<section id="pruned"><h2>Pruned trials</h2>{body}</section>'


def _facts(study: Any) -> str:
    found = spec(study)
    state = _state()
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in (state.COMPLETE, state.PRUNED)}
    space = ", ".join(
        f"{d['path']}=[{', '.join(map(str, d['choices']))}]"
        if d["kind"] == "choice"
        else f"{d['path']}={d['kind']}({d['low']:g}, {d['high']:g})"
        for d in found.get("space", [])
    )
    goals = ", ".join(f"{o['split']}/{o['name']} ({o['direction']})" for o in found["objectives"])
    return (
        '<section id="study"><h2>Study</h2><table>'
        + _row(["objectives", html.escape(goals)])
        + _row(["search space", html.escape(space)])
        + _row(["trials", f"{counts[state.COMPLETE]} complete, {counts[state.PRUNED]} pruned"])
        + _row(
            [
                "pruning",
                html.escape(
                    "off"
                    if not found.get("prune")
                    else f"run linter + {found.get('pruner', 'none')} pruner on the objective"
                    if len(found["objectives"]) == 1
                    else "run linter only (several objectives)"
                ),
            ]
        )
        + "</table></section>"
    )


def render_study(study: Any, root: Path) -> Path:
    """Write ``root/study.html`` for ``study`` as it stands."""
    names = [f"{o['split']}/{o['name']}" for o in spec(study)["objectives"]]
    chart = over_trials_chart(study, names)
    body = [
        page_header(root).replace("losskit report", "losskit study", 1),
        "<main>",
        _facts(study),
        _ranking(study, names),
        _over_trials(chart),
        _pareto(study, names),
        _importances(study),
        _stopped(study),
        "</main>",
    ]
    target = root / "study.html"
    charts = [chart] if chart is not None else []
    write_page(target, f"losskit study: {root.resolve().name}", body, charts)
    return target
