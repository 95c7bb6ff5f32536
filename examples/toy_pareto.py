"""CAGrad's two-objective toy problem through losskit's gradient balancers.

The 2-D problem of Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning"
(NeurIPS 2021, Figure 1; the function and settings of the authors' ``toy.py``): two objectives
``f1, f2`` of a point ``x`` in the plane, whose Pareto set is the segment ``x1`` in ``[-7, 7]``
at ``x2 = -8.3552``. From the paper's three starting points, each method runs Adam (lr 0.001)
for 100,000 steps on the update its balancer gives: the plain sum (the paper's "Adam" on the
average loss; Adam makes sum and mean identical), MGDA, PCGrad, CAGrad (c = 0.5) and UPGrad.
The script prints where each run ends and what that is (on the Pareto set, at its end, stalled
elsewhere, or still moving when the steps ran out) and saves a plot of the trajectories over the
average objective.

It is a hard case by design: in the paper's own figure not every method reaches the Pareto set
from every start. Nothing here is tuned; see docs/balancing.md for the results.

    python examples/toy_pareto.py [--steps 100000] [--out runs/toy_pareto.png]

The full run takes a while on a CPU (a convex solve per step for CAGrad); ``--steps`` shortens
it, ``--methods`` picks some.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import losskit as lk

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--steps", "4000", "--methods", "sum"]

LOWER = 0.000005
PARETO_X2 = -8.3552  # the Pareto set, as drawn by the authors: x1 in [-7, 7] at this x2
STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
RECENT, STALL = 10_000, 0.25  # a run that moved less than STALL in its last RECENT steps stalled
METHODS: dict[str, dict[str, Any]] = {
    "sum": {},
    "mgda": {},
    "pcgrad": {},
    "cagrad": {"c": 0.5},
    "upgrad": {},
}


def objectives(x: Tensor) -> dict[str, Tensor]:
    """``f1`` and ``f2`` at ``x`` (shape ``(..., 2)``), as in the authors' code."""
    x1, x2 = x[..., 0], x[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return {"f1": f1 * c1 + f1_sq * c2, "f2": f2 * c1 + f2_sq * c2}


def distance_to_pareto_set(point: tuple[float, float]) -> float:
    """The distance to the segment the authors draw as the Pareto set."""
    x1, x2 = point
    return math.hypot(max(abs(x1) - 7.0, 0.0), x2 - PARETO_X2)


def pareto_gap(point: tuple[float, float]) -> float:
    """How far from Pareto-stationary ``point`` is: the norm of the minimum-norm convex
    combination of the two gradients, relative to the larger gradient (0 on the Pareto set).

    The set is a curve close to the segment drawn by the authors (``x2`` between -8.36 and
    -8.43); this measure needs no drawing.
    """
    x = torch.tensor(point, requires_grad=True)
    f = objectives(x)
    g1 = torch.autograd.grad(f["f1"], x, retain_graph=True)[0]
    g2 = torch.autograd.grad(f["f2"], x)[0]
    diff = g1 - g2
    alpha = float((g2 - g1) @ g2 / (diff @ diff)) if float(diff @ diff) > 0 else 0.5
    alpha = min(max(alpha, 0.0), 1.0)
    nearest = alpha * g1 + (1 - alpha) * g2
    return float(nearest.norm() / torch.maximum(g1.norm(), g2.norm()).clamp(min=1e-12))


def verdict(point: tuple[float, float], recent: float) -> str:
    """Where a run ended, given how far it moved over its last steps (``recent``).

    ``"pareto set"`` (Pareto-stationary: :func:`pareto_gap` below 0.001), ``"pareto edge"``
    (on it, within 0.5 of an end, where one objective is at its minimum), ``"stalled"``
    (elsewhere, having moved less than ``STALL`` over its last ``RECENT`` steps, when Adam at
    lr 0.001 could cover 10 units) or ``"moving"``.
    """
    if pareto_gap(point) < 1e-3:
        return "pareto edge" if abs(point[0]) > 6.5 else "pareto set"
    return "stalled" if recent < STALL else "moving"


@dataclass
class Run:
    method: str
    start: tuple[float, float]
    end: tuple[float, float]
    verdict: str
    path: Tensor  # (points, 2), every `every` steps
    recent: float  # distance moved over its last steps (see `run`)
    steps: int
    seconds: float


def run(
    method: str,
    start: tuple[float, float],
    steps: int,
    lr: float = 1e-3,
    window: int = 2000,
    tol: float = 1e-3,
) -> Run:
    """Adam from ``start`` on the update of ``method``'s balancer, through a Criterion.

    Stops early once the point has moved less than ``tol`` over ``window`` steps: it has
    converged or stalled, and the remaining steps would not change where it ends. ``recent``
    is how far it moved over that last window, or over the last ``min(RECENT, steps // 4)``
    steps when it ran to the end.
    """
    x = torch.tensor(start, requires_grad=True)
    options = METHODS[method]
    balancer: Any = "sum" if method == "sum" else {"name": method, "shared": [x], **options}
    crit = lk.Criterion(
        {"f1": lk.Term(lambda out, batch: out["f1"]), "f2": lk.Term(lambda out, batch: out["f2"])},
        balancer=balancer,
        check="off",
    )
    optimizer = torch.optim.Adam([x], lr=lr)
    every = max(1, steps // 500)
    recent = min(RECENT, steps // 4)
    history: list[Tensor] = []  # the point every `every` steps over the last `recent` steps
    path = [x.detach().clone()]
    anchor = x.detach().clone()
    started = time.perf_counter()
    step = 0
    while step < steps:
        res = crit(objectives(x), None)
        optimizer.zero_grad(set_to_none=True)
        res.backward()
        optimizer.step()
        crit.step()
        step += 1
        if step % every == 0:
            path.append(x.detach().clone())
            history = [*history[-(recent // every) :], path[-1]]
        if step % window == 0:
            moved = float((x.detach() - anchor).norm())
            if moved < tol:
                break  # converged or stuck: report how little it moved in this window
            anchor = x.detach().clone()
    else:
        moved = float((x.detach() - history[0]).norm()) if history else 0.0
    path.append(x.detach().clone())
    end = (float(x[0].detach()), float(x[1].detach()))
    seconds = time.perf_counter() - started
    return Run(method, start, end, verdict(end, moved), torch.stack(path), moved, step, seconds)


def plot(runs: list[Run], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = torch.linspace(-11, 11, 300)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    values = objectives(torch.stack([xx, yy], -1))
    mean = ((values["f1"] + values["f2"]) / 2).numpy()
    methods = list(dict.fromkeys(r.method for r in runs))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4), squeeze=False)
    for ax, method in zip(axes[0], methods):
        ax.contour(xx.numpy(), yy.numpy(), mean, levels=20, cmap="viridis", linewidths=0.8)
        ax.plot([-7, 7], [PARETO_X2, PARETO_X2], color="gray", linewidth=5, alpha=0.6, zorder=0)
        for r in (r for r in runs if r.method == method):
            ax.plot(r.path[:, 0], r.path[:, 1], color="tab:red", linewidth=1.5)
            ax.plot(*r.start, "ko", markersize=5)
            ax.plot(*r.end, "r*", markersize=9)
        ax.set_title(method)
        ax.set_xlim(-11, 11)
        ax.set_ylim(-11, 11)
        ax.set_aspect("equal")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(
    steps: int = 100_000,
    methods: list[str] | None = None,
    out: Path | None = Path("runs/toy_pareto.png"),
    verbose: bool = True,
) -> list[Run]:
    """Run every method from every start; print a table and save the plot to ``out``."""
    warnings.filterwarnings("ignore", message=".*not DPP.*")  # cvxpy, inside torchjd
    runs = []
    for method in methods or list(METHODS):
        for start in STARTS:
            r = run(method, start, steps)
            runs.append(r)
            if verbose:
                print(
                    f"{method:<8} start ({start[0]:5.1f}, {start[1]:5.1f}) -> "
                    f"({r.end[0]:7.3f}, {r.end[1]:7.3f})  {r.verdict:<11} distance to the "
                    f"drawn set {distance_to_pareto_set(r.end):6.3f}, moving "
                    f"{r.recent:.3f} lately, after {r.steps} steps ({r.seconds:.0f} s)",
                    flush=True,
                )
    if out is not None:
        plot(runs, out)
        if verbose:
            print(f"plot: {out}")
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="Adam steps (paper: 100000)")
    parser.add_argument("--methods", nargs="*", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("runs/toy_pareto.png"))
    args = parser.parse_args()
    main(args.steps, args.methods, args.out)
