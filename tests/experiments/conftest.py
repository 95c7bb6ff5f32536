"""Tiny runs for the study tests: one epoch of a narrow network (a trial takes seconds)."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from losskit.config import load_config

DEMO = resources.files("losskit").joinpath("demo.toml")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def tiny_raw(epochs: int = 1, batch_size: int = 256) -> dict[str, Any]:
    """The demo, ``epochs`` epochs of a narrow network on large batches."""
    raw: dict[str, Any] = load_config(DEMO).model_dump(mode="json")  # type: ignore[arg-type]
    raw["run"]["epochs"] = epochs
    raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
    raw["scheduler"]["options"]["T_max"] = epochs
    raw["data"]["batch_size"] = batch_size
    raw["trainer"]["diagnostics_every"] = None
    return raw


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    from losskit.experiments._runner import write_config

    return write_config(raw, path.parent, path.name)


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "tiny.toml", tiny_raw())
