"""One spawn of two gloo ranks runs every Trainer, balancer and FSDP2 scenario (a spawn costs
seconds); the test files read their part of the results."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def worker() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(HERE))  # spawned children inherit sys.path
        yield importlib.import_module("dist_worker")


@pytest.fixture(scope="session")
def spawned(worker: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    root = tmp_path_factory.mktemp("spawned")
    worker.launch("killed", root)  # SIGKILLed mid-run: the "all" scenario resumes from it
    return root, worker.launch("all", root)
