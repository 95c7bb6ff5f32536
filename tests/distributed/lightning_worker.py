"""The demo model in a LightningModule with losskit's mixin, one process and two (ddp_spawn).

Run as a script by test_lightning.py (in a subprocess, so that a hang becomes a timeout):
``python lightning_worker.py OUT_FILE``. Saves the logged epoch means of every run.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import lightning
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

import losskit as lk
from losskit.demo import DigitsNet, digits_data
from losskit.integrations.lightning import LossKitMixin

GLOBAL_BATCH = 32


class DemoModule(LossKitMixin, lightning.LightningModule):
    """The demo's network and three terms (a warmed-up weight included)."""

    def __init__(self, balancer: str = "sum", batch_size: int = GLOBAL_BATCH) -> None:
        super().__init__()
        self.batch_size = batch_size
        torch.manual_seed(0)
        self.net = DigitsNet(hidden=32, bottleneck=16, dropout=0.0)
        spec: Any = balancer
        if balancer == "upgrad":
            spec = lk.balancers.Gradient("upgrad", shared=self.net.trunk)
        self.criterion = lk.Criterion(
            {
                "cls": lk.Term("cross_entropy", input="logits", target="label"),
                "recon": lk.Term(
                    "mse",
                    input="recon",
                    target="pixels",
                    weight=lk.schedules.LinearWarmup(0.0, 2.0, steps=6),
                ),
                "ink": lk.Term("huber", input="ink", target="ink", weight=0.5, delta=0.5),
            },
            balancer=spec,
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.losses(self.net(batch["pixels"]), batch, "train").total

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.losses(self.net(batch["pixels"]), batch, "val")

    def _loader(self, dataset: Any, batch_size: int) -> DataLoader[Any]:
        # In order, not shuffled (Lightning's own sampler would shuffle the training data), so
        # that the ranks' batches together are the single process's batch.
        sampler = DistributedSampler(dataset, shuffle=False) if dist.is_initialized() else None
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(Subset(digits_data()[0], range(128)), self.batch_size)

    def val_dataloader(self) -> DataLoader[Any]:
        world = dist.get_world_size() if dist.is_initialized() else 1
        return self._loader(Subset(digits_data()[1], range(64)), GLOBAL_BATCH // world)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.2)


def fit(balancer: str, devices: int, accumulate: int) -> dict[str, float]:
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_epochs=2,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    module = DemoModule(balancer, batch_size=GLOBAL_BATCH // devices // accumulate)
    trainer.fit(module)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def main(out: Path) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results = {
        "single/sum": fit("sum", devices=1, accumulate=1),
        "ddp/sum": fit("sum", devices=2, accumulate=2),
        "single/upgrad": fit("upgrad", devices=1, accumulate=1),
        "ddp/upgrad": fit("upgrad", devices=2, accumulate=2),
    }
    torch.save(results, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
