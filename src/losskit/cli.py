"""The ``losskit`` command."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from losskit.errors import LossKitError

# Every command imports torch and losskit's internals in its body: ``losskit --help`` and
# ``losskit <command> --help`` stay fast.

app = typer.Typer(
    name="losskit",
    help="Train PyTorch models with several named losses.",
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
    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


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


def _execute(config: Any, out: Path | None, resume: bool, quiet: bool) -> None:
    from losskit.run import run

    console = Console()
    try:
        _announce_code(config)
        result = run(config, out=out, progress=not quiet, resume=resume)
    except LossKitError as exc:
        raise _fail(exc) from exc
    from losskit._dist import is_main

    if not is_main():  # under torchrun rank 0 reports
        return
    if result.complete:  # a resumed run that had finished: nothing written
        console.print(_summary_table(result.summary))
        console.print(f"run complete: {result.run_dir} had finished; nothing to resume")
        return
    try:
        report = _render_report(result.run_dir)
    except LossKitError as exc:  # e.g. a corrupt log line; the run's files stay
        raise _fail(exc) from exc
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
) -> None:
    """Train the demo: three heads on the embedded handwritten digits, with a report."""
    from losskit.config import load_config

    cfg = load_config(resources.files("losskit").joinpath("demo.toml"))  # type: ignore[arg-type]
    if epochs is not None:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"epochs": epochs})})
    _execute(cfg, out, resume=False, quiet=quiet)


@app.command(name="run")
def run_config(
    config: Path = typer.Argument(..., help="A run configuration (TOML)."),
    out: Path | None = typer.Option(None, help="The run folder (default: [run] out or runs/NAME)."),
    resume: bool = typer.Option(False, help="Continue from the run folder's last.pt."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Train what a configuration file describes."""
    _execute(config, out, resume=resume, quiet=quiet)


@app.command(name="losses")
def list_losses(
    family: str | None = typer.Option(None, help="Only losses of this family."),
) -> None:
    """List the loss catalogue."""
    from losskit import losses

    families = sorted({spec.family for spec in losses.available()})
    if family is not None and family not in families:
        raise _fail(
            LossKitError(f"no loss family {family!r}; the families are {', '.join(families)}")
        )
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
) -> None:
    """Suggest catalogue losses and their settings for a problem, with the reasons."""
    import sys

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
    table = Table(title=f"losses for {task}")
    for column in ("loss", "settings", "why"):
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


@app.command(name="report")
def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder holding metrics.jsonl."),
    output: Path | None = typer.Option(None, help="Where to write (default RUN_DIR/report.html)."),
    skip_corrupt: bool = typer.Option(
        False, help="Leave out corrupt log lines instead of failing."
    ),
) -> None:
    """Write the self-contained HTML report (plots, summary, config) of a run folder."""
    from losskit.report import render

    try:
        path = render(run_dir, output=output, skip_corrupt=skip_corrupt)
    except LossKitError as exc:
        raise _fail(exc) from exc
    Console().print(f"report: {path}", highlight=False)


# -- diagnostics ------------------------------------------------------------------------------
@app.command()
def doctor(
    config: Path = typer.Argument(..., help="A run configuration (TOML), as for `losskit run`."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every loss term on one training batch: inputs, contracts, shares, gradients.

    Exits with status 1 when a finding is an error (a non-finite term, a broken contract).
    """
    import json

    from losskit.diagnostics import diagnose_config

    try:
        _announce_code(config)
        report = diagnose_config(config)
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
    """Find NaNs, spikes, divergence, plateaus, overfitting, oscillation and multi-loss
    trouble in run logs; exit 1 when there is any finding (for CI), 2 on an unreadable log."""
    import json

    from losskit.lint import lint_runs

    try:
        found = lint_runs(run_dirs)
    except LossKitError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in found], indent=2))
    elif found:
        table = Table(title=f"{len(found)} finding(s)")
        for column in ("run", "split/key", "kind", "steps", "what", "advice"):
            table.add_column(column, overflow="fold")
        for f in found:
            style = "red" if f.severity == "error" else "yellow"
            table.add_row(
                f.run,
                f"{f.split}/{f.key}",
                f.kind,
                f"{f.start}-{f.end}",
                f.message,
                f.advice,
                style=style,
            )
        Console().print(table)
    else:
        Console().print(f"no findings in {len(run_dirs)} run(s)")
    if found:
        raise typer.Exit(code=1)


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
        "range", help="'range' (min-max over seeds) or 'std' (mean ± std) for the ranking."
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
    if interval not in ("range", "std"):
        raise _fail(LossKitError(f"--interval must be 'range' or 'std', got {interval!r}"))
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


# -- losskit bench (issue 10) -------------------------------------------------------------
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
    out: Path | None = typer.Option(
        None, help="The run folder for bench.json and bench.png (default runs/bench)."
    ),
) -> None:
    """Time, peak memory and numerical checks of losses; flags unstable patterns."""
    from losskit.benchmarking import bench

    try:
        chosen: dict[str, dict[str, Any]] = {name: {} for name in cases or []}
        if config is not None:
            from losskit.config import load_config

            for term in load_config(config).terms.values():
                chosen.setdefault(term.loss, dict(term.loss_arguments))
        if not chosen:
            raise LossKitError("name the losses to bench (or give --config)")
        try:
            dims = tuple(int(d) for d in shape.replace("x", ",").split(",") if d.strip())
        except ValueError as exc:
            raise LossKitError(f"--shape must be sizes like 4096,80: {exc}") from exc
        report = bench(
            chosen,
            dims,
            dtype=dtype,
            device=device,
            memory=memory,
            stability=stability,
            min_run_time=min_run_time,
            threads=threads,
        )
        paths = report.write(out if out is not None else Path("runs/bench"))
    except LossKitError as exc:
        raise _fail(exc) from exc
    console = Console()
    console.print(report.table())
    console.print(f"json: {paths['json']}\nplot: {paths['plot']}", highlight=False)


# -- end of losskit bench ------------------------------------------------------------------


def main() -> None:
    """Entry point of the ``losskit`` console script."""
    app()
