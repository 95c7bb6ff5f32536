"""Setups for the child-process memory test: importable by name in a spawned child."""

from __future__ import annotations

from collections.abc import Callable

import torch

MIB = 1024 * 1024


def allocate_64_mib() -> Callable[[], None]:
    def step() -> None:
        torch.ones(16 * MIB, dtype=torch.float32).sum()

    return step
