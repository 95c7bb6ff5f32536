"""MSE, L1 or Huber on data with outliers? Decide by experiment, with the spread over seeds.

A linear regression whose training targets carry 10% gross outliers (all on one side, as a
faulty sensor gives); the validation targets are clean. Every variant trains on one loss and
monitors the others (monitor-only terms: logged, never trained on), so each run reports the
clean validation MSE and MAE whatever it trains on. ``compare`` runs the three losses at three
seeds and ranks them by the best clean validation MSE, calling two losses different only when
their ranges over the seeds do not overlap.

    python examples/compare_regression_losses.py --out runs/regression-losses [--jobs 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import losskit as lk
from losskit.experiments import CompareResult

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--seeds", "2", "--epochs", "4", "--n-train", "128"]

FEATURES = 8


def make_data(
    n_train: int = 256, n_val: int = 256, outliers: float = 0.1, seed: int = 0
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """y = w·x + 1 + noise; a share ``outliers`` of the training targets get +5 to +25."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(FEATURES, generator=g)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, FEATURES, generator=g)
        return x, x @ w + 1.0 + 0.1 * torch.randn(n, generator=g)

    x, y = sample(n_train)
    hit = torch.randperm(n_train, generator=g)[: int(outliers * n_train)]
    y[hit] += 5.0 + 20.0 * torch.rand(len(hit), generator=g)
    xv, yv = sample(n_val)
    return (
        [{"x": a, "y": b} for a, b in zip(x, y)],
        [{"x": a, "y": b} for a, b in zip(xv, yv)],
    )


class Linear(nn.Module):
    """A linear model returning one value per sample."""

    def __init__(self, features: int = FEATURES) -> None:
        super().__init__()
        self.layer = nn.Linear(features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x).squeeze(-1)


def config(epochs: int = 12, n_train: int = 256) -> dict[str, Any]:
    """The base run: trains on ``fit`` (varied), monitors clean MSE and MAE."""
    # each run is a `losskit run` process: name this file's module, not "__main__"
    here = Path(__file__).stem if __name__ == "__main__" else __name__
    return {
        "run": {"name": "regression-losses", "epochs": epochs, "threads": 1},
        "model": {"source": f"{here}:Linear", "input": "x"},
        "data": {
            "source": f"{here}:make_data",
            "batch_size": 32,
            "options": {"n_train": n_train, "n_val": 256},
        },
        "terms": {
            "fit": {"loss": "mse", "target": "y"},
            "mse": {"loss": "mse", "target": "y", "monitor": True},
            "mae": {"loss": "l1", "target": "y", "monitor": True},
        },
        "optimizer": {"name": "adam", "lr": 0.05},
        # the best epoch and the ranking both use the clean validation MSE, whatever is trained
        "trainer": {"monitor": "val/loss/mse", "log_every": 4},
    }


def main(
    out: Path = Path("runs/regression-losses"),
    seeds: int = 3,
    epochs: int = 12,
    n_train: int = 256,
    jobs: int = 1,
) -> CompareResult:
    """Compare the three losses; return the :class:`~losskit.experiments.CompareResult`."""
    return lk.experiments.compare(
        config(epochs, n_train),
        vary={"terms.fit.loss": ["mse", "l1", "huber"]},
        seeds=seeds,
        out=out,
        jobs=jobs,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/regression-losses"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-train", type=int, default=256, help="training samples")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    result = main(args.out, args.seeds, args.epochs, args.n_train, jobs=args.jobs)
    c = result.comparison
    for rank in c.ranking:
        v = rank.value
        print(
            f"tier {rank.tier}  {c.labels[rank.variant]:<22} clean val MSE {v.mean:.4f} "
            f"± {v.std:.4f} [{v.low:.4f}, {v.high:.4f}]"
        )
    print(f"report: {result.report}")
