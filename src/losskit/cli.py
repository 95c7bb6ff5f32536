"""The ``losskit`` command."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from losskit._cli_help import PlainCommand, PlainGroup
from losskit.errors import LossKitError, NonFiniteLossError

# Every command imports torch and losskit's internals in its body: ``losskit --help`` and
# ``losskit <command> --help`` stay fast.

EXIT_CODES = (
    "Exit status: 0 ok; 1 findings (doctor, lint); 2 usage or input error (a bad option, "
    "a bad or missing file, an invalid configuration); 3 training stopped (a loss went "
    'non-finite under nonfinite = "raise").'
)

app = typer.Typer(
    name="losskit",
    help="Train PyTorch models with several named losses.",
    epilog=EXIT_CODES,
    cls=PlainGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(show: bool) -> None:
    if show:
        from losskit import __version__

        typer.echo(f"losskit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train PyTorch models with several named losses."""


def _fail(exc: LossKitError) -> typer.Exit:
    """Print ``exc`` and the exit to raise: 3 when training stopped on a non-finite loss (the
    configuration was valid: a script retrying bad input and one retrying a diverged run differ),
    2 for every other error."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print("[bold red]error:[/] ", end="")
    console.print(str(exc), markup=False)  # "[optimizer]" in a message is text, not markup
    return typer.Exit(code=3 if isinstance(exc, NonFiniteLossError) else 2)


def _echo_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (tensors as lists, paths as strings)."""
    import json

    def plain(value: Any) -> Any:
        tolist = getattr(value, "tolist", None)
        return tolist() if callable(tolist) else str(value)

    typer.echo(json.dumps(data, indent=2, default=plain))


def _summary_table(summary: dict[str, Any]) -> Table:
    final = summary["final"]
    train, val = final.get("train", {}), final.get("val", {})
    table = Table(title=f"{summary['name']}: {summary['epochs']} epochs, {summary['steps']} steps")
    for column in ("key", "weight", "train", "val"):
        table.add_column(column, justify="left" if column == "key" else "right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    keys = [k.removeprefix("loss/") for k in train if k.startswith("loss/")]
    for key in keys:
        table.add_row(
            key,
            fmt(summary["weights"].get(key)),
            fmt(train.get(f"loss/{key}")),
            fmt(val.get(f"loss/{key}")),
        )
    table.add_row("total", "", fmt(train.get("loss")), fmt(val.get("loss")), style="bold")
    for name in sorted({k for k in val if k.startswith("metric/")}):
        table.add_row(name, "", fmt(train.get(name)), fmt(val.get(name)), style="cyan")
    return table


def _announce_code(config: Any) -> None:
    """Say which of the user's modules a configuration will import and run, before it does."""
    if not isinstance(config, (str, Path)):
        return
    from losskit.config import load_config

    code = load_config(config).code
    if code:
        listed = ", ".join(f"{ref.partition(':')[0]} ({field})" for field, ref in code.items())
        Console(stderr=True).print(
            f"{config} imports and runs: {listed}; run configurations only you trust",
            highlight=False,
        )


def _execute(
    config: Any,
    out: Path | None,
    resume: bool,
    quiet: bool,
    as_json: bool = False,
    write_report: bool = True,
) -> None:
    from losskit.run import run

    console = Console()
    try:
        _announce_code(config)
        result = run(
            config, out=out, progress=not (quiet or as_json), resume=resume, report=write_report
        )
    except LossKitError as exc:
        raise _fail(exc) from exc
    from losskit._dist import is_main

    if not is_main():  # under torchrun rank 0 reports
        return
    if result.complete:  # a resumed run that had finished: nothing written
        if as_json:
            _echo_json({"run_dir": str(result.run_dir), "complete": True, **result.summary})
            return
        console.print(_summary_table(result.summary))
        console.print(f"run complete: {result.run_dir} had finished; nothing to resume")
        return
    try:
        report = result.fit.report or (_render_report(result.run_dir) if write_report else None)
    except LossKitError as exc:  # e.g. a corrupt log line; the run's files stay
        raise _fail(exc) from exc
    if as_json:
        where = {"run_dir": str(result.run_dir), "report": str(report) if report else None}
        _echo_json({**where, "complete": False, **result.summary})
        return
    console.print(_summary_table(result.summary))
    if "val_accuracy" in result.summary:
        console.print(f"validation accuracy: [bold]{result.summary['val_accuracy']:.4f}[/]")
    console.print(f"training time: {result.summary['seconds']:.1f} s")
    console.print(f"run folder: {result.run_dir}")
    if report is not None:
        console.print(f"report: {report}")


def _render_report(run_dir: Path) -> Path | None:
    from losskit.report import render

    return render(run_dir)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="The run folder to write."),
    epochs: int | None = typer.Option(None, min=1, help="Override the number of epochs."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as JSON (and no progress)."
    ),
) -> None:
    """Train the demo: three heads on the embedded handwritten digits, with a report."""
    from losskit.config import load_config

    cfg = load_config(resources.files("losskit").joinpath("demo.toml"))  # type: ignore[arg-type]
    if epochs is not None:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"epochs": epochs})})
    _execute(cfg, out, resume=False, quiet=quiet, as_json=as_json)


@app.command(name="run")
def run_config(
    config: Path = typer.Argument(..., help="A run configuration (TOML)."),
    out: Path | None = typer.Option(
        None, help="The run folder (default: the config's run.out, or runs/NAME)."
    ),
    resume: bool = typer.Option(False, help="Continue from the run folder's last.pt."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as JSON (and no progress)."
    ),
    report: bool = typer.Option(True, help="Write report.html at the end."),
) -> None:
    """Train what a configuration file describes."""
    _execute(config, out, resume=resume, quiet=quiet, as_json=as_json, write_report=report)


@app.command(name="losses")
def list_losses(
    family: str | None = typer.Option(None, help="Only losses of this family."),
    as_json: bool = typer.Option(False, "--json", help="Print the catalogue as JSON."),
) -> None:
    """List the loss catalogue."""
    from losskit import losses

    families = sorted({spec.family for spec in losses.available()})
    if family is not None and family not in families:
        raise _fail(
            LossKitError(f"no loss family {family!r}; the families are {', '.join(families)}")
        )
    if as_json:
        _echo_json(
            [
                {
                    "name": spec.name,
                    "family": spec.family,
                    "aliases": list(spec.aliases),
                    "description": spec.description,
                }
                for spec in losses.available(family)
            ]
        )
        return
    table = Table(title="losskit loss catalogue")
    for column in ("name", "family", "aliases", "description"):
        table.add_column(column)
    for spec in losses.available(family):
        table.add_row(spec.name, spec.family, ", ".join(spec.aliases), spec.description)
    Console().print(table)


def _read_targets(path: Path) -> Any:
    """The tensor in a ``.npy`` or ``torch.save`` file, read as data (no pickled code runs)."""
    import numpy as np
    import torch

    from losskit.engine._checkpoint import load_data

    def refuse(where: Path, problem: str) -> LossKitError:
        return LossKitError(
            f"--targets {where}: {problem}; give a .npy array or a .pt file of one tensor "
            "(torch.save(targets, path))"
        )

    if path.suffix == ".npy":
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise refuse(path, f"not a numpy array of numbers ({exc})") from None
    return load_data(path, error=refuse)


@app.command(name="recommend")
def recommend_command(
    task: str | None = typer.Option(
        None,
        help="regression, count, quantile, binary, multiclass, multilabel or segmentation "
        "(asked for when omitted in a terminal).",
    ),
    outliers: bool = typer.Option(False, help="Regression targets have outliers or heavy tails."),
    imbalance: bool = typer.Option(False, help="Some classes (or the positives) are rare."),
    targets: Path | None = typer.Option(
        None, help="A .pt or .npy file of training targets, to compute class weights from."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestions as JSON."),
    balancer: bool = typer.Option(
        False, "--balancer", help="Which balancer to start with, from measurements."
    ),
    scales: str | None = typer.Option(
        None, help="With --balancer: losses on 'similar' or 'different' scales (default both)."
    ),
) -> None:
    """Suggest catalogue losses and their settings for a problem, with the reasons; with
    --balancer, which balancer to start with (measured on the shipped multi-task tasks)."""
    import sys

    if balancer:
        _recommend_balancer(scales, as_json)
        return

    import torch
    from rich.prompt import Confirm, Prompt

    from losskit.recommend import recommend

    tasks = [
        "regression",
        "count",
        "quantile",
        "binary",
        "multiclass",
        "multilabel",
        "segmentation",
    ]
    if task is None:
        if not sys.stdin.isatty():
            raise _fail(LossKitError("give --task (no terminal to ask in)"))
        task = Prompt.ask("task", choices=tasks)
        if task == "regression":
            outliers = Confirm.ask("outliers or heavy-tailed targets?", default=False)
        elif task in ("binary", "multiclass", "multilabel", "segmentation"):
            imbalance = Confirm.ask("are some classes rare?", default=False)
    try:
        loaded = _read_targets(targets) if targets is not None else None
        recs = recommend(task, outliers=outliers, imbalance=imbalance, targets=loaded)  # type: ignore[arg-type]
    except LossKitError as exc:
        raise _fail(exc) from exc
    selected = "pred" if task in ("regression", "count", "quantile") else "logits"
    if as_json:
        _echo_json(
            [
                {
                    "loss": rec.loss,
                    "options": rec.options,
                    "why": rec.why,
                    "toml": rec.toml("main"),
                    "python": rec.python("main", input=selected),
                }
                for rec in recs
            ]
        )
        return
    table = Table(title=f"losses for {task}")
    for column in ("loss", "options", "why"):
        table.add_column(column)
    for rec in recs:
        settings = ", ".join(
            f"{k}={v.tolist() if isinstance(v, torch.Tensor) else v}"
            for k, v in rec.options.items()
        )
        table.add_row(rec.loss, settings, rec.why)
    console = Console()
    console.print(table)
    console.print("as a config term:\n" + recs[0].toml("main"), highlight=False)
    code = recs[0].python("main", input=selected)
    console.print("\nin Python:\n" + code, highlight=False, soft_wrap=True)


def _recommend_balancer(scales: str | None, as_json: bool) -> None:
    from losskit.balancers import advise

    cases = [scales] if scales is not None else ["similar", "different"]
    try:
        advice = [advise(case) for case in cases]  # type: ignore[arg-type]
    except LossKitError as exc:
        raise _fail(exc) from exc
    if as_json:
        _echo_json(
            [
                {
                    "scales": a.scales,
                    "start_with": a.start_with,
                    "why": a.why,
                    "first_tier": list(a.first_tier),
                    "tune_when": a.tune_when,
                    "source": a.source,
                    "table": [
                        {
                            "method": r.method,
                            "mean": r.mean,
                            "ci95": list(r.ci95),
                            "tier": r.tier,
                            "step_vs_sum": r.step_vs_sum,
                            "memory_vs_sum": r.memory_vs_sum,
                            "findings": list(r.findings),
                        }
                        for r in a.table
                    ],
                }
                for a in advice
            ]
        )
        return
    console = Console()
    for a in advice:
        headline = f"losses on {a.scales} scales: start with {a.start_with!r}"
        console.print(headline, style="bold", highlight=False)
        console.print(a.why, highlight=False)
        table = Table(title=f"measured ({a.source})")
        for column in ("balancer", "test metric", "tier", "step", "memory"):
            table.add_column(column, justify="left" if column == "balancer" else "right")
        for r in a.table:
            memory = "-" if r.memory_vs_sum is None else f"{r.memory_vs_sum:.2f}x"
            tier = "-" if r.tier is None else str(r.tier)
            table.add_row(r.method, f"{r.mean:.4f}", tier, f"{r.step_vs_sum:.2f}x", memory)
        console.print(table)
        console.print(f"when to tune instead: {a.tune_when}\n", highlight=False)


@app.command(name="report")
def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder holding metrics.jsonl."),
    output: Path | None = typer.Option(None, help="Where to write (default RUN_DIR/report.html)."),
    skip_corrupt: bool = typer.Option(
        False, help="Leave out corrupt log lines instead of failing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report's path as JSON."),
) -> None:
    """Write the self-contained HTML report (plots, summary, config) of a run folder."""
    from losskit.report import render

    try:
        path = render(run_dir, output=output, skip_corrupt=skip_corrupt)
    except LossKitError as exc:
        raise _fail(exc) from exc
    if as_json:
        _echo_json({"report": str(path)})
        return
    Console().print(f"report: {path}", highlight=False)


# -- diagnostics ------------------------------------------------------------------------------
@app.command()
def doctor(
    config: Path = typer.Argument(..., help="A run configuration (TOML), as for `losskit run`."),
    batches: int = typer.Option(1, min=1, help="Training batches to check."),
    steps: int = typer.Option(
        0, min=0, help="Then train this many steps and check again (finds a later NaN)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every loss term on training batches: inputs, contracts, shares, gradients.

    Exits 1 when a finding is an error (a non-finite term, a broken contract), 2 on bad input.
    """
    import json

    from losskit.diagnostics import diagnose_config

    try:
        _announce_code(config)
        report = diagnose_config(config, batches=batches, steps=steps)
    except LossKitError as exc:
        raise _fail(exc) from exc
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        Console().print(report)
    if not report.ok:
        raise typer.Exit(code=1)


# -- experiment and monitor: lint, compare --------------------------------------------------
@app.command(name="lint")
def lint_command(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders (or metrics.jsonl files)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as a JSON list."),
) -> None:
    """Find NaNs, spikes, divergence, plateaus and multi-loss trouble in run logs.

    Also overfitting and oscillation. Exits 1 on any finding (for CI), 2 on a bad log.
    """
    import json

    from losskit.lint import lint_runs

    try:
        found = lint_runs(run_dirs)
    except LossKitError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in found], indent=2))
    elif found:
        _print_findings(found)
    else:
        Console().print(f"no findings in {len(run_dirs)} run(s)")
    if found:
        raise typer.Exit(code=1)


def _elide_prefix(names: list[str]) -> tuple[str, list[str]]:
    """The folder prefix all ``names`` share (when there are several) and what is left."""
    import os

    if len(set(names)) < 2:
        return "", names
    common = os.path.commonpath(names) if all(names) else ""
    if not common:
        return "", names
    return common, [os.path.relpath(n, common) for n in names]


def _first_nonfinite(found: list[Any], runs: list[str]) -> str | None:
    """One line naming the key that went non-finite first and its step (or None); ``runs``
    are the findings' run names as shown."""
    onsets = [(f, run) for f, run in zip(found, runs) if f.kind == "nonfinite"]
    if not onsets:
        return None
    # At one step, a term's own key before the total it makes non-finite.
    first, run = min(onsets, key=lambda o: (o[0].start, o[0].key == "loss", o[0].split != "train"))
    where = f" in {run}" if run and len(set(runs)) > 1 else ""
    return f"first non-finite: {first.split}/{first.key} at step {first.start}{where}"


def _print_findings(found: list[Any]) -> None:
    """Each finding on a line of its own, its message and advice wrapped once below it."""
    import textwrap

    console = Console(highlight=False)
    width = max(40, min(console.width, 100))
    prefix, runs = _elide_prefix([f.run for f in found])
    headline = _first_nonfinite(found, runs)
    if headline:
        console.print(headline, style="bold red", soft_wrap=True)
    console.print(f"{len(found)} finding(s)" + (" in runs under:" if prefix else ""))
    if prefix:
        console.print(f"  {prefix}", markup=False, soft_wrap=True)
    for f, run in zip(found, runs):
        style = "red" if f.severity == "error" else "yellow"
        head = f"{f.severity} {f.kind}: {f.split}/{f.key}, steps {f.start}-{f.end}"
        console.print(head + (f" ({run})" if run else ""), style=style, soft_wrap=True)
        for text in (f.message, f"advice: {f.advice}" if f.advice else ""):
            if text:
                wrapped = textwrap.fill(text, width, initial_indent="  ", subsequent_indent="    ")
                console.print(wrapped, markup=False, soft_wrap=True)


@app.command(name="compare")
def compare_command(
    config: Path = typer.Argument(..., help="The base run configuration (TOML)."),
    vary: list[str] = typer.Option(
        [],
        help="PATH=V1,V2,... (repeatable), e.g. terms.reg.loss=mse,l1,huber; the grid is "
        "the product.",
    ),
    seeds: int = typer.Option(3, min=1, help="Seeds per variant (run.seed, run.seed + 1, ...)."),
    jobs: int = typer.Option(
        1, min=0, help="Runs at once here (0: only create the study, for losskit worker)."
    ),
    out: Path | None = typer.Option(None, help="The grid folder (default runs/NAME-compare)."),
    rank_by: str | None = typer.Option(
        None, help="split/key to rank by (default the config's trainer.monitor)."
    ),
    interval: str = typer.Option(
        "range",
        help="'range' (min-max over seeds), 'std' (mean ± std) or 'ci95' (95% interval of "
        "the mean) for the ranking.",
    ),
    rank_on: str = typer.Option(
        "best", help="Rank on each run's 'best' value over epochs or its 'final' one."
    ),
    storage: str | None = typer.Option(
        None, help="An RDB URL for a study shared by several hosts (default: a journal in OUT)."
    ),
    study: str | None = typer.Option(None, help="The study's name in --storage."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking and figures as JSON."),
) -> None:
    """Run a grid of variants over seeds (resumable, on Optuna) and write one report."""
    import json

    from losskit.experiments import StudyProgress, compare, parse_vary

    console = Console(stderr=as_json)
    if interval not in ("range", "std", "ci95"):
        raise _fail(LossKitError(f"--interval must be 'range', 'std' or 'ci95', got {interval!r}"))
    if rank_on not in ("best", "final"):
        raise _fail(LossKitError(f"--rank-on must be 'best' or 'final', got {rank_on!r}"))
    try:
        grid = dict(parse_vary(spec) for spec in vary)
        with StudyProgress(console) as progress:
            result = compare(
                config,
                grid,
                seeds=seeds,
                out=out,
                jobs=jobs,
                rank_by=rank_by,
                interval=interval,  # type: ignore[arg-type]
                rank_on=rank_on,  # type: ignore[arg-type]
                storage=storage,
                study_name=study,
                on_done=progress,
            )
    except LossKitError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(_comparison_json(result), indent=2))
        return
    console.print(_ranking_table(result.comparison))
    if result.comparison.caveat:
        console.print(f"note: {result.comparison.caveat}", style="yellow", highlight=False)
    console.print(f"ran {len(result.ran)} run(s), {len(result.skipped)} already complete")
    if result.comparison.missing:
        console.print(f"{len(result.comparison.missing)} run(s) not finished yet (workers)")
    if result.comparison.findings:
        console.print(f"{len(result.comparison.findings)} linter finding(s): see the report")
    console.print(f"report: {result.report}", highlight=False)


def _ranking_table(c: Any) -> Table:
    from losskit.experiments import short_labels

    shared, short = short_labels([c.labels[v] for v in c.variants])
    better = "lower" if c.mode == "min" else "higher"
    title = f"ranking by best {c.rank_by} ({better} is better)"
    table = Table(title=title + (f"\nvariants: {shared}" if shared else ""))
    for column in ("tier", "variant", "mean", "std", "min", "max", "not different from"):
        table.add_column(
            column,
            justify="left" if column in ("variant", "not different from") else "right",
            overflow="fold",
        )
    for r in c.ranking:
        table.add_row(
            str(r.tier),
            short[c.labels[r.variant]],
            f"{r.value.mean:.4g}",
            f"{r.value.std:.2g}",
            f"{r.value.low:.4g}",
            f"{r.value.high:.4g}",
            "; ".join(short[c.labels[t]] for t in r.ties),
        )
    return table


def _comparison_json(result: Any) -> dict[str, Any]:
    import dataclasses

    c = result.comparison
    variants: dict[str, Any] = {}
    for row in c.rows:
        entry = variants.setdefault(row.variant, {"label": c.labels[row.variant], "keys": {}})
        entry["keys"][row.key] = {
            "final": dataclasses.asdict(row.final),
            "best": dataclasses.asdict(row.best),
        }
    for name, spread in c.step_ms.items():
        variants.setdefault(name, {"label": c.labels[name], "keys": {}})["step_ms"] = (
            dataclasses.asdict(spread)
        )
    return {
        "out": str(result.out),
        "report": str(result.report),
        "rank_by": c.rank_by,
        "mode": c.mode,
        "interval": c.interval,
        "seeds": list(c.seeds),
        "caveat": c.caveat,
        "ranking": [
            {
                "tier": r.tier,
                "variant": r.variant,
                "label": c.labels[r.variant],
                "value": dataclasses.asdict(r.value),
                "ties": list(r.ties),
            }
            for r in c.ranking
        ],
        "variants": variants,
        "missing": [str(p) for p in c.missing],
        "findings": len(c.findings),
    }


@app.command(name="tune")
def tune_command(
    config: Path = typer.Argument(
        ..., help="The base run configuration (TOML; may hold [search])."
    ),
    search: list[str] = typer.Option(
        [],
        help="PATH=log(LOW,HIGH) | float(LOW,HIGH) | int(LOW,HIGH) | [A,B,...] (repeatable), "
        "e.g. terms.recon.weight=log(1e-3,10) or balancer=[sum,uncertainty].",
    ),
    trials: int = typer.Option(20, min=1, help="Trials the study finishes (pruned ones count)."),
    objective: list[str] = typer.Option(
        [],
        help="SPLIT/NAME[:min|max] (repeatable: several give a Pareto front); default the "
        "config's trainer.monitor.",
    ),
    jobs: int = typer.Option(
        1, min=0, help="Trials at once here (0: only create the study, for losskit worker)."
    ),
    out: Path | None = typer.Option(None, help="The study folder (default runs/NAME-tune)."),
    prune: bool = typer.Option(True, help="Prune trials on the run linter's findings."),
    pruner: str = typer.Option(
        "median", help="Objective pruner with one objective: median, asha or none."
    ),
    seed: int = typer.Option(0, help="The sampler's seed."),
    storage: str | None = typer.Option(None, help="An RDB URL shared by several hosts."),
    study: str | None = typer.Option(None, help="The study's name in --storage."),
) -> None:
    """Search config paths (weights, losses, balancers) on Optuna, pruning bad trials on the
    run linter's findings; write the study report and the best configuration as TOML."""
    from losskit.experiments import StudyProgress, tune

    console = Console()
    try:
        with StudyProgress(console) as progress:
            result = tune(
                config,
                search,
                trials=trials,
                objectives=objective,
                out=out,
                jobs=jobs,
                prune=prune,
                pruner=pruner,
                seed=seed,
                storage=storage,
                study_name=study,
                on_done=progress,
            )
    except LossKitError as exc:
        raise _fail(exc) from exc
    counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
    console.print(f"trials: {counts or 'none yet'}")
    for best in result.best:
        values = ", ".join(f"{v:.4g}" for v in best["values"])
        params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        console.print(f"best {best['key']}: {values} ({params})", highlight=False)
    if result.best_config is not None:
        console.print(f"best configuration: {result.best_config}", highlight=False)
    console.print(f"report: {result.report}", highlight=False)


@app.command(name="worker")
def worker_command(
    study_dir: Path | None = typer.Argument(
        None, help="The study folder (of losskit compare or tune); or give --storage."
    ),
    storage: str | None = typer.Option(None, help="The study's RDB URL."),
    study: str | None = typer.Option(None, help="The study's name in --storage."),
    jobs: int = typer.Option(1, min=1, help="Trials at once on this machine."),
    out: Path | None = typer.Option(
        None, help="Where run folders go (default the folder the study was created in)."
    ),
) -> None:
    """Join a study from any host and run its trials until it is done."""
    from losskit.experiments import StudyProgress, work

    console = Console()
    if (study_dir is None) == (storage is None):
        raise _fail(LossKitError("give the study folder or --storage URL (one of them)"))
    try:
        with StudyProgress(console) as progress:
            ran = work(
                study_dir, storage=storage, study_name=study, jobs=jobs, out=out, on_event=progress
            )
    except LossKitError as exc:
        raise _fail(exc) from exc
    console.print(f"worker done: ran {ran} trial(s)")


# -- losskit bench (issue 10, convergence: issue 26) ----------------------------------------
_QUICK_RUN_TIME = 0.05
"""Seconds of timed runs per case under ``--quick``."""


@app.command(name="bench")
def bench_command(
    cases: list[str] = typer.Argument(
        None, help="Catalogue names or '<activation>+<loss>' (e.g. focal bce_logits sigmoid+bce)."
    ),
    config: Path | None = typer.Option(None, help="Bench the terms of this run config instead."),
    shape: str = typer.Option("4096,80", help="The input's shape, classes along dim 1."),
    dtype: str = typer.Option("float32", help="float32, float64, bfloat16 or float16."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    memory: bool = typer.Option(True, help="Measure peak memory (a child process per case)."),
    stability: bool = typer.Option(True, help="Run the extreme-input and precision checks."),
    min_run_time: float = typer.Option(0.2, help="Seconds of timed runs per case."),
    threads: int | None = typer.Option(None, help="Intra-op threads (default: torch's)."),
    convergence: bool = typer.Option(
        False, help="Train a small model per task family with each loss: steps to target."
    ),
    seeds: int = typer.Option(3, help="Training seeds of --convergence."),
    quick: bool = typer.Option(
        False, help=f"Shorter convergence budgets, timings of at most {_QUICK_RUN_TIME} s."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print bench.json's content."),
    out: Path | None = typer.Option(
        None, help="The run folder for bench.json and the plots (default runs/bench)."
    ),
) -> None:
    """Time, peak memory, numerical checks and (--convergence) convergence speed of losses,
    rated low/medium/high against the best of the run; flags unstable patterns."""
    from losskit.benchmarking import ConvergenceSettings, bench

    try:
        chosen = _bench_cases(cases, config)
        progress = _BenchProgress(len(chosen) * (2 if convergence else 1))
        with progress:
            report = bench(
                chosen,
                _bench_shape(shape),
                dtype=dtype,
                device=device,
                memory=memory,
                stability=stability,
                min_run_time=min(min_run_time, _QUICK_RUN_TIME) if quick else min_run_time,
                threads=threads,
                convergence=ConvergenceSettings(seeds=seeds, quick=quick) if convergence else False,
                on_step=progress.step,
            )
        paths = report.write(out if out is not None else Path("runs/bench"))
    except LossKitError as exc:
        raise _fail(exc) from exc
    if json_output:
        typer.echo(paths["json"].read_text(), nl=False)
        return
    console = Console()
    for table in report.tables():
        console.print(table)
    console.print("\n".join(f"{kind}: {path}" for kind, path in paths.items()), highlight=False)


class _BenchProgress:
    """Progress of ``losskit bench`` on stderr: a bar with the time left in a terminal, a plain
    line per step when piped (stdout stays the report, or the JSON)."""

    def __init__(self, total: int) -> None:
        import time

        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.console = Console(stderr=True)
        self.bar = (
            Progress(
                TextColumn("bench {task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            if self.console.is_terminal
            else None
        )
        self.task = self.bar.add_task("", total=total) if self.bar is not None else None

    def __enter__(self) -> _BenchProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, case: str, what: str) -> None:
        import time

        self.done += 1
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, description=f"{case} {what}")
            return
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done)
        self.console.print(
            f"bench: {self.done}/{self.total} {case} {what} ({elapsed:.0f} s, about "
            f"{left:.0f} s left)",
            highlight=False,
        )


def _bench_cases(cases: list[str] | None, config: Path | None) -> dict[str, dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {name: {} for name in cases or []}
    if config is not None:
        from losskit.config import load_config

        for term in load_config(config).terms.values():
            chosen.setdefault(term.loss, dict(term.loss_arguments))
    if not chosen:
        raise LossKitError("name the losses to bench (or give --config)")
    return chosen


def _bench_shape(shape: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in shape.replace("x", ",").split(",") if d.strip())
    except ValueError as exc:
        raise LossKitError(f"--shape must be sizes like 4096,80: {exc}") from exc


# -- end of losskit bench ------------------------------------------------------------------


def main() -> None:
    """Entry point of the ``losskit`` console script."""
    app()


def _plain_help() -> None:
    """Every command's help in plain words (see :mod:`losskit._cli_help`)."""
    for info in app.registered_commands:
        if info.cls is None or info.cls is TyperCommand:
            info.cls = PlainCommand


_plain_help()
