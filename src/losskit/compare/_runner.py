"""Running a grid: one run folder per variant and seed, resumable, optionally in parallel.

``out/compare.json`` records the grid; ``out/<variant>/seed<k>/`` holds each run (the usual
run folder). A run is complete when its ``summary.json`` exists (``losskit.run`` writes it
last, by rename), so a grid run again, after an interruption, runs only what it lacks; a run
that was cut off restarts from scratch in its folder.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losskit._io import replace_text
from losskit.compare._grid import Variant, with_seed
from losskit.errors import ConfigError

if TYPE_CHECKING:
    from losskit.config import RunConfig

__all__ = ["Job", "is_complete", "plan", "run_jobs", "write_manifest"]

MANIFEST = "compare.json"


@dataclass(frozen=True)
class Job:
    """One run of the grid: a variant at a seed, and its folder."""

    variant: str
    seed: int
    folder: Path
    config: dict[str, Any]


def is_complete(folder: Path) -> bool:
    """Whether the run in ``folder`` finished (its ``summary.json`` exists)."""
    return (folder / "summary.json").is_file()


def plan(variants: Sequence[Variant], seeds: Sequence[int], out: Path) -> list[Job]:
    """Every (variant, seed) run with its folder, variants outermost."""
    return [
        Job(
            v.name,
            seed,
            out / v.name / f"seed{seed}",
            with_seed(v.config, seed).model_dump(mode="json"),
        )
        for v in variants
        for seed in seeds
    ]


def write_manifest(
    out: Path,
    base: RunConfig,
    vary: dict[str, list[Any]],
    seeds: Sequence[int],
    variants: Sequence[Variant],
) -> None:
    """Record the grid in ``out/compare.json``; refuse a folder that holds another grid."""
    manifest = {
        "base": base.model_dump(mode="json"),
        "vary": vary,
        "seeds": list(seeds),
        "variants": [{"name": v.name, "label": v.label} for v in variants],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in ("base", "vary", "seeds")} != {
            k: json.loads(json.dumps(manifest[k])) for k in ("base", "vary", "seeds")
        }:
            raise ConfigError(
                f"{out} holds another grid (its {MANIFEST} differs in the base configuration, "
                "the values varied or the seeds); compare into another folder"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    replace_text(path, text)


def _execute(config: dict[str, Any], folder: str) -> str:
    """Run one job (in this process or a worker)."""
    from losskit.config import load_config
    from losskit.run import run

    run(load_config(config), out=folder, progress=False, report=False)
    return folder


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """End this worker when ``parent`` dies, so that no orphan goes on writing run folders.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread polls ``os.getppid()`` (the worker is re-parented when its parent
    dies) twice a second.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent:  # it died before the signal was armed
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="losskit-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    _die_with(parent)
    import torch

    torch.set_num_threads(threads)


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int = 1,
    on_done: Callable[[Job], None] | None = None,
) -> list[Job]:
    """Run the jobs not yet complete; return those run. ``workers > 1``: in that many spawned
    processes (each with ``cpu_count // workers`` intra-op threads unless the config sets
    ``run.threads``), which end when this process dies."""
    todo = [job for job in jobs if not is_complete(job.folder)]
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            _execute(job.config, str(job.folder))
            if on_done is not None:
                on_done(job)
        return todo
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(threads, os.getpid()),
    ) as pool:
        futures = {pool.submit(_execute, job.config, str(job.folder)): job for job in todo}
        try:
            for future in as_completed(futures):
                future.result()  # a failed run raises here, naming its error
                if on_done is not None:
                    on_done(futures[future])
        except BaseException:
            # Stop at the first failure (or Ctrl-C): queued runs are cancelled, not waited for.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return todo
