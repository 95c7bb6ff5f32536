"""Crash-safe checkpoints and the random-number state a resumed run needs.

Checkpoints are data: they are read with ``torch.load(weights_only=True)``, so a file that
carries code (a pickled callable, an object with ``__reduce__``) is refused before anything in
it runs. Everything losskit stores in them is tensors and plain Python values.

Example::

    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ckpt.pt"
    >>> save_checkpoint({"w": torch.ones(2)}, path)
    >>> load_checkpoint(path)["w"]
    tensor([1., 1.])
    >>> _ = path.write_bytes(b"")
    >>> load_checkpoint(path)
    Traceback (most recent call last):
    ...
    losskit.errors.CheckpointError: cannot resume from .../ckpt.pt: the file is empty ...
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from losskit.errors import CheckpointError

__all__ = [
    "capture_loader",
    "capture_rng",
    "checkpoint_error",
    "load_checkpoint",
    "load_data",
    "restore_loader",
    "restore_rng",
    "save_checkpoint",
]

_ZIP_MAGIC = b"PK\x03\x04"  # every file torch.save writes (its zip format) starts so


def _legacy_numpy_globals() -> list[Any]:
    """What a numpy array of plain numbers needs to unpickle: checkpoints of earlier losskit
    versions hold numpy's random state as one. These build arrays of numbers, never run code."""
    reconstruct = np.zeros(1).__reduce__()[0]
    return [reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with ``torch.save`` to a temporary file, fsync it, then rename it.

    A crash at any moment leaves either the previous checkpoint or the new one, never a torn
    file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def checkpoint_error(path: str | Path, problem: str) -> CheckpointError:
    """A :class:`CheckpointError` naming ``path``, what is wrong with it and the way out (the
    ``best.pt`` beside it when there is one, else starting afresh)."""
    path = Path(path)
    best = path.with_name("best.pt")
    if path.name != best.name and best.is_file():
        way = (
            f"resume from {best} instead (for `losskit run --resume`, copy it over {path.name}), "
            "or start afresh without resuming (drop --resume)"
        )
    else:
        way = "start afresh without resuming (drop --resume)"
    return CheckpointError(f"cannot resume from {path}: {problem}; {way}")


def load_data(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    error: Callable[[Path, str], Exception] = checkpoint_error,
) -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for each way a file fails.

    ``error(path, problem)`` builds the exception raised (default :func:`checkpoint_error`).
    A file that carries code is refused before any of it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise error(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise error(path, "the file is empty (0 bytes; a failed copy or a full disk leaves it so)")
    with path.open("rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not zipfile.is_zipfile(path):
        if head == _ZIP_MAGIC:
            raise error(path, f"the file is truncated ({size} bytes, its end is missing)")
        raise error(path, "not a checkpoint (not a file that torch.save writes)")
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(exc))
        what = next((g for g in found.groups() if g), "") if found else "an unlisted class"
        raise error(
            path,
            f"it holds a Python object that is not plain data ({what}); it was refused and "
            "nothing in it ran (losskit loads checkpoints with torch.load(weights_only=True))",
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).split()).split(". ")[0]
        raise error(path, f"the file is damaged ({type(exc).__name__}: {detail})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or any ``torch.save`` dict of
    tensors and plain values); raise :class:`~losskit.errors.CheckpointError` when it is
    missing, damaged, not a dictionary or carries code."""
    state = load_data(path, map_location)
    if not isinstance(state, dict):
        raise checkpoint_error(
            path, f"not a losskit checkpoint (it holds a {type(state).__name__}, not a dictionary)"
        )
    return state


def capture_rng() -> dict[str, Any]:
    """The state of every random generator a training loop draws from, as tensors and plain
    values (numpy's key as an int64 tensor) so that it loads with ``weights_only=True``."""
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(position),
            int(has_gauss),
            float(cached),
        ),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` captured (also numpy's state as earlier versions kept
    it, an array)."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, *rest = state["numpy"]
    if isinstance(keys, torch.Tensor):
        keys = keys.cpu().numpy().astype(np.uint32)
    random.setstate(state["python"])
    np.random.set_state((kind, keys, *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _generators(loader: object) -> list[torch.Generator]:
    """The generators that order ``loader``'s batches: the DataLoader's own and its samplers'
    (the same object when the DataLoader made its ``RandomSampler``), each once."""
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    found: list[torch.Generator] = []
    for owner in (loader, sampler, getattr(batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def capture_loader(loader: object) -> dict[str, Any]:
    """Where ``loader``'s order stands: its generators' states and a ``DistributedSampler``'s
    seed and epoch (taken at an epoch's end, the next epoch draws the same order again).

    A loader without a generator of its own draws its order from torch's global generator,
    which :func:`capture_rng` keeps.
    """
    state: dict[str, Any] = {"generators": [g.get_state() for g in _generators(loader)]}
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        state["sampler"] = {"seed": int(sampler.seed), "epoch": int(sampler.epoch)}
    return state


def restore_loader(loader: object, state: dict[str, Any]) -> None:
    """Put back what :func:`capture_loader` captured into the same kind of loader; raise
    ``ValueError`` when its generators do not match the checkpoint's."""
    generators = _generators(loader)
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(
            f"the checkpoint's training loader had {len(saved)} generator(s) of its own, this "
            f"one has {len(generators)}; build the loader as the checkpointed run did"
        )
    for generator, generator_state in zip(generators, saved):
        generator.set_state(generator_state.cpu())
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler) and "sampler" in state:
        sampler.seed = int(state["sampler"]["seed"])
        sampler.set_epoch(int(state["sampler"]["epoch"]))
