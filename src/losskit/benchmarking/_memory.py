"""Peak memory of one forward+backward, measured where the measurement can be defended.

On CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``) above what was
allocated before the step. On the CPU there is no allocator statistic, and ``tracemalloc`` does
not see tensor memory, so each case runs in a fresh child process (``spawn``) that builds its
inputs, runs one warm-up step (lazy library initialisation is not the loss's memory), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the step again and reports its peak
resident set size (``VmHWM``) minus the resident size just before (method ``"rss_peak_reset"``).
Where the mark cannot be reset (not Linux), the peaks (``getrusage(RUSAGE_SELF).ru_maxrss``) of
two children, one that runs the step and one that only builds the inputs, give the delta
(method ``"idle_child"``, which then includes first-call initialisation).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import resource
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["Memory", "measure_cuda", "peak_rss_delta"]

Setup = Callable[..., Callable[[], object]]
"""``setup(*args) -> step``: builds the inputs (not measured) and returns the step (measured).
Must be importable by name (a module-level function) so that a spawned child can run it."""

_MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Memory:
    """Peak bytes of the step above the memory held before it, and how they were measured."""

    peak_bytes: int
    method: str

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / _MIB


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) from ``/proc/self/status``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Hand free heap pages back to the system (glibc), so the resident size is what is held."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _child(
    setup: Setup, args: tuple[Any, ...], threads: int, run: bool, warm: bool
) -> tuple[int, int | None, bool]:
    torch.set_num_threads(threads)
    step = setup(*args)
    if warm:
        step()
    gc.collect()
    _trim_heap()
    reset = warm and _reset_peak()
    before = _status_bytes("VmRSS")
    if run:
        step()
    # After a reset, VmHWM is the step's peak: ru_maxrss also keeps the peak of threads that
    # exited before the reset (the kernel folds it into the process's signal struct).
    peak = _status_bytes("VmHWM") if reset else None
    return peak if peak is not None else _maxrss_bytes(), before, reset


def _in_child(
    setup: Setup, args: tuple[Any, ...], run: bool, warm: bool
) -> tuple[int, int | None, bool]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_child, setup, args, torch.get_num_threads(), run, warm).result()


def peak_rss_delta(setup: Setup, *args: Any) -> Memory:
    """The step's peak RSS above the child's resident size before it (see the module notes).

    ``setup(*args)`` runs in a spawned child: it must be a module-level function whose module
    the child can import (a script guarded by ``if __name__ == "__main__"`` is fine).
    """
    peak, before, reset = _in_child(setup, args, run=True, warm=True)
    if reset and before is not None:
        return Memory(max(0, peak - before), "rss_peak_reset")
    peak, _, _ = _in_child(setup, args, run=True, warm=False)
    idle, _, _ = _in_child(setup, args, run=False, warm=False)
    return Memory(max(0, peak - idle), "idle_child")


def measure_cuda(step: Callable[[], object], device: torch.device) -> Memory:
    """Peak CUDA allocator bytes of ``step()`` above those allocated before it."""
    step()  # warm-up: cuBLAS workspaces and autotuning are not the loss's memory
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return Memory(torch.cuda.max_memory_allocated(device) - before, "cuda_allocator")
