"""The ``losskit`` command."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from losskit import losses

app = typer.Typer(
    name="losskit",
    help="Train PyTorch models with several named losses.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo(
    steps: int = typer.Option(300, min=1, help="Optimizer steps to train."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Train a three-headed model with a keyed criterion and print every key's loss."""
    from losskit.demo import train_demo

    console = Console()
    history = train_demo(steps=steps, seed=seed)
    table = Table(title=f"losskit demo: per-key losses after {steps} steps")
    table.add_column("key")
    table.add_column("weight", justify="right")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    first, last = history[0], history[-1]
    for key in [k.removeprefix("loss/") for k in last if k.startswith("loss/")]:
        table.add_row(
            key,
            f"{last[f'weight/{key}']:.3g}",
            f"{first[f'loss/{key}']:.4f}",
            f"{last[f'loss/{key}']:.4f}",
        )
    table.add_row("total", "", f"{first['loss']:.4f}", f"{last['loss']:.4f}", style="bold")
    console.print(table)


@app.command(name="losses")
def list_losses(
    family: str | None = typer.Option(None, help="Only losses of this family."),
) -> None:
    """List the loss catalogue."""
    table = Table(title="losskit loss catalogue")
    for column in ("name", "family", "aliases", "description"):
        table.add_column(column)
    for spec in losses.available(family):
        table.add_row(spec.name, spec.family, ", ".join(spec.aliases), spec.description)
    Console().print(table)


def main() -> None:
    """Entry point of the ``losskit`` console script."""
    app()
