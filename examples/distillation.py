"""Knowledge distillation on the embedded digits: soft-target KL with temperature + hard CE.

A wide teacher is trained first; a narrow student then learns from the teacher's softened
logits (``distillation_kl``, scaled by T^2 as in Hinton et al., 2015) and from the labels
(``cross_entropy``). The teacher's logits are part of each batch, selected by key like any target.

    python examples/distillation.py --epochs 15 --out runs/distillation
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
GALLERY = ["--epochs", "2"]


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def accuracy(logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
    return (logits.argmax(-1) == batch["label"]).float().mean()


def main(
    epochs: int = 15, out: Path | None = None, seed: int = 0, temperature: float = 4.0
) -> tuple[lk.engine.FitSummary, lk.engine.FitSummary]:
    """Train the teacher, then the student; return both summaries."""
    lk.engine.seed_everything(seed)
    train_set, val_set = digits_data()

    def forward(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return model(batch["pixels"])

    teacher = mlp(256)
    teacher_fit = lk.engine.Trainer(
        teacher,
        lk.Criterion({"ce": lk.Term("cross_entropy", target="label")}),
        torch.optim.Adam(teacher.parameters(), lr=3e-3),
        forward=forward,
        metrics={"accuracy": accuracy},
        progress=False,
        seed=seed,
    ).fit(
        DataLoader(train_set, batch_size=64, shuffle=True),
        DataLoader(val_set, batch_size=256),
        epochs=epochs,
    )

    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(train_set.pixels), teacher(val_set.pixels)

    def with_teacher(pixels: Tensor, labels: Tensor, logits: Tensor) -> list[dict[str, Tensor]]:
        order = torch.randperm(len(labels))
        return [
            {"pixels": pixels[i], "label": labels[i], "teacher": logits[i]} for i in order.split(64)
        ]

    student = mlp(16)
    crit = lk.Criterion(
        {
            "kd": lk.Term("distillation_kl", target="teacher", temperature=temperature, weight=0.7),
            "ce": lk.Term("cross_entropy", target="label", weight=0.3),
        }
    )
    student_fit = lk.engine.Trainer(
        student,
        crit,
        torch.optim.Adam(student.parameters(), lr=3e-3),
        forward=forward,
        metrics={"accuracy": accuracy},
        run_dir=out,
        progress=out is not None,
        seed=seed,
    ).fit(
        with_teacher(train_set.pixels, train_set.labels, teacher_logits[0]),
        with_teacher(val_set.pixels, val_set.labels, teacher_logits[1]),
        epochs=epochs,
    )
    return teacher_fit, student_fit


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/distillation"))
    args = parser.parse_args()
    teacher, student = main(args.epochs, args.out)
    print(
        "teacher",
        round(teacher.val["metric/accuracy"], 4),
        "student",
        round(student.val["metric/accuracy"], 4),
    )
    lk.report.render(args.out)
