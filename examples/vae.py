"""A VAE on the embedded digits: reconstruction plus a KL term under cyclical annealing.

The KL weight follows ``Cyclical`` (Fu et al., 2019): it ramps from 0 to 1 over the first half
of each cycle and holds, which avoids posterior collapse; ``weight/kl`` in the log shows it.

    python examples/vae.py --epochs 20 --out runs/vae
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

import losskit as lk
from losskit.demo import digits_data

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--epochs", "3", "--limit", "256"]


class VAE(nn.Module):
    def __init__(self, latent: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(64, hidden), nn.GELU(), nn.Linear(hidden, 2 * latent)
        )
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, 64))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mu, log_var = self.encoder(batch["pixels"]).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp() if self.training else mu
        return {"logits": self.decoder(z), "mu": mu, "log_var": log_var}


def kl_divergence(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """KL(q(z|x) || N(0, I)), summed over latent dimensions, averaged over the batch."""
    mu, log_var = outputs["mu"], outputs["log_var"]
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1).mean()


def reconstruction(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """Bernoulli log-likelihood of the [0, 1] pixels, summed over pixels, averaged over images."""
    per_pixel = nn.functional.binary_cross_entropy_with_logits(
        outputs["logits"], batch["pixels"], reduction="none"
    )
    return per_pixel.sum(-1).mean()


def main(
    epochs: int = 20, out: Path | None = None, seed: int = 0, limit: int | None = None
) -> lk.engine.FitSummary:
    lk.engine.seed_everything(seed)
    train, val = digits_data()
    if limit is not None:
        train = torch.utils.data.Subset(train, range(limit))  # type: ignore[assignment]
        val = torch.utils.data.Subset(val, range(limit))  # type: ignore[assignment]
    loader = DataLoader(train, batch_size=64, shuffle=True)
    steps_per_epoch = len(loader)
    crit = lk.Criterion(
        {
            "recon": lk.Term(reconstruction),
            "kl": lk.Term(
                kl_divergence,
                weight=lk.schedules.Cyclical(
                    0.0, 1.0, period=max(4 * steps_per_epoch, 2), ratio=0.5
                ),
            ),
        }
    )
    model = VAE()
    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.Adam(model.parameters(), lr=2e-3),
        run_dir=out,
        progress=out is not None,
        seed=seed,
    )
    return trainer.fit(loader, DataLoader(val, batch_size=256), epochs=epochs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/vae"))
    parser.add_argument("--limit", type=int, default=None, help="use only this many samples")
    args = parser.parse_args()
    summary = main(args.epochs, args.out, limit=args.limit)
    print({k: round(v, 4) for k, v in summary.val.items()})
    lk.report.render(args.out)
