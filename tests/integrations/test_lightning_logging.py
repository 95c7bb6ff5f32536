"""LossKitMixin logs every key each training step and shows the total and each key on the
progress bar by default; both can be turned off."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import losskit as lk

lightning = pytest.importorskip("lightning")  # the [lightning] extra
from lightning.pytorch.loggers.logger import Logger  # noqa: E402

from losskit.integrations.lightning import LossKitMixin  # noqa: E402


class Recorder(Logger):
    """Keeps every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))


class Model(LossKitMixin, lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 2)
        self.criterion = lk.Criterion(
            {
                "a": lk.Term("mse", input=lambda o, b: o[:, 0], target=1),
                "b": lk.Term("l1", input=lambda o, b: o[:, 1], target=1, weight=0.5),
            }
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.losses(self.net(batch[0]), batch).total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Quiet(Model):
    losskit_on_step = False
    losskit_prog_bar = False


def _fit(model: Model) -> tuple[Any, Recorder, list[Any]]:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 3, generator=g), torch.randn(12, generator=g)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    logger = Recorder()
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    first = next(iter(data))
    return trainer, logger, [first, trainer.fit(model, data)]


def test_every_key_is_logged_each_step_and_shown_on_the_progress_bar() -> None:
    model = Model()
    net = torch.nn.Linear(3, 2)
    net.load_state_dict(model.net.state_dict())
    trainer, logger, (first, _) = _fit(model)
    steps = [m for _, m in logger.calls if "train/loss_step" in m]
    assert len(steps) == 3  # one per batch
    assert {"train/loss/a_step", "train/loss/b_step", "train/weight/b_step"} <= set(steps[0])
    with torch.no_grad():  # the first step's values, before any update
        out = net(first[0])
        a = F.mse_loss(out[:, 0], first[1])
        b = F.l1_loss(out[:, 1], first[1])
    assert steps[0]["train/loss/a_step"] == pytest.approx(float(a), rel=1e-5)
    assert steps[0]["train/loss/b_step"] == pytest.approx(float(b), rel=1e-5)
    assert steps[0]["train/loss_step"] == pytest.approx(float(a + 0.5 * b), rel=1e-5)
    bar = set(trainer.progress_bar_metrics)
    assert bar == {
        f"train/{k}_{w}" for k in ("loss", "loss/a", "loss/b") for w in ("step", "epoch")
    }


def test_step_logging_and_the_progress_bar_turn_off() -> None:
    trainer, logger, _ = _fit(Quiet())
    logged = set().union(*(m for _, m in logger.calls))
    assert not any(k.endswith("_step") for k in logged)
    assert {"train/loss", "train/loss/a", "train/weight/b"} <= logged
    assert trainer.progress_bar_metrics == {}
