"""Partially labelled, multi-dataset training: optional terms on a round-robin of loaders.

One set of digits knows only each image's class, another only the image and its ink, and a few
samples carry all three annotations (``losskit.data.partially_labelled_digits``). The demo's
three-headed network trains on all of them at once: every head's term is optional, so a batch
trains the heads whose labels it carries and the other terms are absent from it (left out of the
total and of the logs, never counted as 0). ``losskit.data.RoundRobin`` takes one batch from each
dataset's loader in turn.

The network trains twice, through the Trainer and in a hand-written loop, and each run prints
every key's validation loss.

    python examples/partial_labels.py
    python examples/partial_labels.py --tiny      # a few seconds
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

import losskit as lk
from losskit.data import PartialDigits, RoundRobin, partially_labelled_digits
from losskit.demo import DigitsNet, accuracy

# The recipe gallery's small run (docs/gen/gallery.py runs the script with these arguments)
GALLERY = ["--tiny", "--epochs", "3"]

KEYS = ("cls", "recon", "ink")


def make_criterion() -> lk.Criterion:
    """The demo's three terms, each optional: a batch without its target leaves it out."""
    return lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label", optional=True),
            "recon": lk.Term("mse", input="recon", target="image", weight=2.0, optional=True),
            "ink": lk.Term(
                "huber", input="ink", target="ink", weight=0.5, optional=True, delta=0.5
            ),
        }
    )


def round_robin(parts: PartialDigits, batch_size: int, seed: int) -> RoundRobin[dict[str, Tensor]]:
    """One shuffling loader per training set, taken in turn (every sample once per epoch)."""
    return RoundRobin(
        *(
            DataLoader(
                ds, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed + i)
            )
            for i, ds in enumerate(parts.train)
        )
    )


def forward(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return model(batch["pixels"])  # type: ignore[no-any-return]


@dataclass
class KeyMeans:
    """Each key's mean over the samples that carry its label, accumulated batch by batch.

    A batch adds ``value * count`` for the keys it holds (``res.keys()``) and nothing for the
    absent ones, so a key is never averaged in as 0 where it had no label. The count is
    ``res.counts[key]`` where the term reports what its value averages (the non-ignored targets
    of a cross-entropy) and the batch's size otherwise (a mean over equally sized samples).
    """

    sums: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, Tensor] = field(default_factory=dict)

    def add(self, res: lk.LossResult, batch_size: int) -> None:
        counts = res.counts
        for key in res:
            count = counts.get(key)
            if count is None:
                count = torch.tensor(float(batch_size), device=res.total.device)
            value = res[key].detach() * count
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts[key] + count if key in self.counts else count

    def means(self) -> dict[str, float]:
        """``{"loss/<key>": mean}`` over the keys seen (one host read per key)."""
        return {f"loss/{k}": float(self.sums[k] / self.counts[k]) for k in self.sums}


@torch.no_grad()
def key_means(
    model: nn.Module,
    crit: lk.Criterion,
    loader: RoundRobin[dict[str, Tensor]] | DataLoader[dict[str, Tensor]],
) -> dict[str, float]:
    """Every key's mean over ``loader`` in eval mode."""
    was_training = model.training
    model.eval()
    means = KeyMeans()
    for batch in loader:
        means.add(crit(forward(model, batch), batch), len(batch["pixels"]))
    model.train(was_training)
    return means.means()


@dataclass
class HandRun:
    """The hand-written loop's per-key validation means before and after, and per-epoch
    training means."""

    before: dict[str, float]
    after: dict[str, float]
    train: list[dict[str, float]]
    skipped_steps: int


def train_by_hand(parts: PartialDigits, epochs: int, batch_size: int, seed: int) -> HandRun:
    """Criterion, optimizer and a round-robin of loaders; nothing else."""
    torch.manual_seed(seed)
    model, crit = DigitsNet(), make_criterion()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train = round_robin(parts, batch_size, seed)
    val = DataLoader(parts.val, batch_size=256)
    before = key_means(model, crit, val)
    history = []
    for _ in range(epochs):
        means = KeyMeans()
        for batch in train:
            res = crit(forward(model, batch), batch)
            opt.zero_grad(set_to_none=True)
            res.backward()
            opt.step()
            crit.step()
            means.add(res, len(batch["pixels"]))
        history.append(means.means())
    return HandRun(before, key_means(model, crit, val), history, crit.skipped_steps)


def train_with_trainer(
    parts: PartialDigits, epochs: int, batch_size: int, seed: int
) -> tuple[lk.engine.FitSummary, int]:
    """The same training through the Trainer: the round-robin is its training data."""
    torch.manual_seed(seed)
    model, crit = DigitsNet(), make_criterion()
    trainer = lk.engine.Trainer(
        model,
        crit,
        torch.optim.AdamW(model.parameters(), lr=3e-3),
        forward=forward,
        metrics={"accuracy": accuracy},
        progress=False,
        seed=seed,
    )
    val = DataLoader(parts.val, batch_size=256)
    summary = trainer.fit(round_robin(parts, batch_size, seed), val, epochs=epochs)
    return summary, crit.skipped_steps


def main(
    tiny: bool = False, epochs: int | None = None, seed: int = 0, threads: int | None = 1
) -> tuple[lk.engine.FitSummary, HandRun]:
    """Train both ways and print each key's validation loss.

    ``threads``: torch's intra-op threads while training (restored after); a network this small
    is fastest on one.
    """
    epochs = epochs if epochs is not None else (10 if tiny else 30)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        parts = partially_labelled_digits(seed=seed, both_fraction=0.2)
        summary, _ = train_with_trainer(parts, epochs, 64, seed)
        hand = train_by_hand(parts, epochs, 64, seed)
    finally:
        torch.set_num_threads(before)
    sizes = zip(("classes", "images", "both"), parts.train)
    print("training sets:", ", ".join(f"{name} {len(ds)}" for name, ds in sizes))
    print(f"{'validation':<22}" + "".join(f"{k:>9}" for k in KEYS))
    rows = {"hand loop, untrained": hand.before, "hand loop": hand.after, "Trainer": summary.val}
    for name, values in rows.items():
        print(f"{name:<22}" + "".join(f"{values[f'loss/{k}']:>9.4f}" for k in KEYS))
    print(f"Trainer validation accuracy: {summary.val['metric/accuracy']:.3f}")
    return summary, hand


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few epochs, for a quick look")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.tiny, args.epochs, args.seed)
