"""Process-group set-up decisions, on one CPU process: the backend, each rank's GPU, and
``losskit run`` leaving no group it created behind."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import losskit.run
from losskit.config import load_config
from losskit.engine import distributed


def test_default_backend_keeps_gloo_for_cpu_collectives_on_a_cuda_host() -> None:
    assert distributed.default_backend(cuda=True) == "cpu:gloo,cuda:nccl"
    assert distributed.default_backend(cuda=False) == "gloo"


def test_setup_without_torchrun_creates_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup() is False
    assert not dist.is_initialized()


def test_rank_device_gives_an_indexless_cuda_this_ranks_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    cuda, cuda1, cpu = torch.device("cuda"), torch.device("cuda:1"), torch.device("cpu")
    assert distributed.rank_device(cuda) == cuda  # one process: left as given
    monkeypatch.setattr(distributed, "world", lambda: 2)
    assert distributed.rank_device(cuda) == torch.device("cuda", 3)
    assert distributed.rank_device(cuda1) == cuda1
    assert distributed.rank_device(cpu) == cpu


def test_run_destroys_the_group_it_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def setup() -> bool:
        store = dist.HashStore()
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        return True

    def build(*args: object, **kwargs: object) -> None:
        assert dist.is_initialized()
        raise RuntimeError("stop after set-up")

    monkeypatch.setattr(losskit.run.distributed, "setup", setup)
    monkeypatch.setattr(losskit.run, "build", build)
    cfg = load_config(resources.files("losskit").joinpath("demo.toml"))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="stop after set-up"):
        losskit.run.run(cfg, out=tmp_path / "run", progress=False)
    assert not dist.is_initialized()


def test_is_main_reads_torchruns_rank_when_there_is_no_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.is_main() is True
    monkeypatch.setenv("RANK", "1")  # a torchrun rank after `losskit run` destroyed its group
    assert distributed.is_main() is False
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_main() is True
