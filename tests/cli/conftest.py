"""Run configurations the CLI tests share (small: the embedded digits, a few steps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

BASE = """
[run]
epochs = 1
[model]
source = "digits_mlp"
input = "pixels"
[data]
source = "digits"
batch_size = {batch}
[terms.cls]
loss = "cross_entropy"
input = "logits"
target = "label"
[optimizer]
name = "sgd"
lr = {lr}
"""


def write_config(folder: Path, name: str, *, lr: float, batch: int = 64, top: str = "") -> Path:
    """A digits run file; ``lr=1e4`` goes non-finite after a few steps, never at step 0."""
    path = folder / f"{name}.toml"
    path.write_text(top + BASE.format(lr=lr, batch=batch))
    return path


@pytest.fixture(scope="package")
def config_writer() -> Callable[..., Path]:
    """:func:`write_config`, for tests that need a run file of their own."""
    return write_config


@pytest.fixture(scope="package")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    write_config(folder, "ok", lr=0.05, batch=256)
    write_config(folder, "nan", lr=1e4)
    return folder
