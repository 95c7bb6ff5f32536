"""Segmentation with Dice + cross-entropy on synthetic shapes: two keyed terms, one Criterion.

Each 32x32 image holds a disc and a square on noise; the network labels every pixel as
background, disc or square. Cross-entropy trains every pixel; Dice keeps the small shapes from
being drowned by the background.

    python examples/segmentation.py --epochs 15 --out runs/segmentation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

import losskit as lk

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--epochs", "4", "--n", "96"]


def shapes(n: int, g: torch.Generator, size: int = 32) -> dict[str, Tensor]:
    """Images (n, 1, size, size) and masks (n, size, size): 0 background, 1 disc, 2 square."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        cy, cx = torch.randint(6, size - 6, (2,), generator=g).tolist()
        r = int(torch.randint(3, 6, (1,), generator=g))
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        sy, sx = torch.randint(0, size - 8, (2,), generator=g).tolist()
        side = int(torch.randint(4, 8, (1,), generator=g))
        masks[i, sy : sy + side, sx : sx + side] = 2
    images = masks.float().unsqueeze(1) * 0.5 + 0.3 * torch.randn(n, 1, size, size, generator=g)
    return {"image": images, "mask": masks}


class SmallUNet(nn.Module):
    def __init__(self, classes: int = 3, width: int = 16) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.head = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, classes, 1)
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        skip = self.down(batch["image"])
        up = self.up(self.mid(self.pool(skip)))
        return self.head(torch.cat([skip, up], dim=1))


def mean_iou(logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """Mean intersection-over-union of the foreground classes."""
    pred, mask = logits.argmax(1), batch["mask"]
    ious = []
    for c in (1, 2):
        inter = ((pred == c) & (mask == c)).sum()
        union = ((pred == c) | (mask == c)).sum()
        ious.append(inter / union.clamp_min(1))
    return torch.stack(ious).float().mean()


def main(
    epochs: int = 15, out: Path | None = None, seed: int = 0, n: int = 256
) -> lk.engine.FitSummary:
    lk.engine.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    train, val = shapes(n, g), shapes(max(n // 4, 8), g)
    batches = [{k: v[i : i + 16] for k, v in train.items()} for i in range(0, n, 16)]
    crit = lk.Criterion(
        {
            "ce": lk.Term("cross_entropy", target="mask"),
            "dice": lk.Term("dice", target="mask", mode="multiclass", include_background=False),
        }
    )
    model = SmallUNet()
    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.Adam(model.parameters(), lr=3e-3),
        metrics={"iou": mean_iou},
        monitor="val/metric/iou",
        mode="max",
        run_dir=out,
        progress=out is not None,
        seed=seed,
    )
    return trainer.fit(batches, [val], epochs=epochs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/segmentation"))
    parser.add_argument("--n", type=int, default=256, help="training images")
    args = parser.parse_args()
    summary = main(args.epochs, args.out, n=args.n)
    print({k: round(v, 4) for k, v in summary.val.items()})
    lk.report.render(args.out)
