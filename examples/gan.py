"""A GAN with two optimizers routed by key: the discriminator and the generator alternate.

The data is a ring of eight Gaussians in 2-D. The discriminator steps on ``adv_d`` after its own
forward pass, then the generator steps on ``adv_g`` against the updated discriminator; each
optimizer only ever sees the gradient of its own keys with respect to its own parameters.

    python examples/gan.py --epochs 30 --out runs/gan
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import losskit as lk

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--epochs", "5", "--batches", "20"]


def ring(n: int, g: torch.Generator, modes: int = 8, radius: float = 2.0) -> Tensor:
    angle = torch.randint(0, modes, (n,), generator=g) * (2 * math.pi / modes)
    centres = torch.stack([angle.cos(), angle.sin()], dim=-1) * radius
    return centres + 0.05 * torch.randn(n, 2, generator=g)


class GAN(nn.Module):
    def __init__(self, noise: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.noise = noise
        self.generator = nn.Sequential(
            nn.Linear(noise, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2),
        )
        self.discriminator = nn.Sequential(
            nn.Linear(2, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )


def discriminator_pass(model: GAN, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    fake = model.generator(batch["z"]).detach()
    return {"real": model.discriminator(batch["x"]), "fake": model.discriminator(fake)}


def generator_pass(model: GAN, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"fake": model.discriminator(model.generator(batch["z"]))}


def _distances(model: GAN, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        points = model.generator(torch.randn(n, model.noise, generator=g))
    angles = torch.arange(8) * (2 * math.pi / 8)
    centres = torch.stack([angles.cos(), angles.sin()], dim=-1) * 2.0
    return torch.cdist(points, centres)


def mode_coverage(model: GAN, n: int = 2000, seed: int = 1) -> float:
    """The share of the eight modes with at least 2% of generated points within 0.3."""
    near = _distances(model, n, seed) < 0.3
    return float((near.float().mean(0) > 0.02).float().mean())


def mode_distance(model: GAN, n: int = 2000, seed: int = 1) -> float:
    """The median distance of generated points to their nearest mode (the data's is ~0.06)."""
    return float(_distances(model, n, seed).min(1).values.median())


def main(
    epochs: int = 30, out: Path | None = None, seed: int = 0, batches: int = 50
) -> tuple[lk.engine.FitSummary, dict[str, float]]:
    lk.engine.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    model = GAN()
    data = [
        {"x": ring(128, g), "z": torch.randn(128, model.noise, generator=g)} for _ in range(batches)
    ]
    crit = lk.Criterion(
        {
            # Non-saturating GAN losses on logits.
            "adv_d": lk.Term(
                lambda o, b: F.softplus(-o["real"]).mean() + F.softplus(o["fake"]).mean()
            ),
            "adv_g": lk.Term(lambda o, b: F.softplus(-o["fake"]).mean()),
        }
    )
    trainer = lk.engine.Trainer(
        model,
        crit,
        {
            "disc": torch.optim.Adam(model.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999)),
            "gen": torch.optim.Adam(model.generator.parameters(), lr=1e-3, betas=(0.5, 0.999)),
        },
        routes={"disc": ["adv_d"], "gen": ["adv_g"]},
        forward={"disc": discriminator_pass, "gen": generator_pass},
        run_dir=out,
        progress=out is not None,
        seed=seed,
    )
    before = mode_distance(model)
    summary = trainer.fit(data, epochs=epochs)
    return summary, {
        "distance_before": before,
        "distance_after": mode_distance(model),
        "coverage": mode_coverage(model),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/gan"))
    parser.add_argument("--batches", type=int, default=50, help="batches per epoch")
    args = parser.parse_args()
    summary, quality = main(args.epochs, args.out, batches=args.batches)
    print({k: round(v, 4) for k, v in summary.train.items()}, quality)
    lk.report.render(args.out)
