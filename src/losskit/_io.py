"""Files that survive a killed writer (private, shared): appended logs, and whole files replaced
atomically."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from losskit.errors import LossKitWarning


def drop_partial_line(path: Path) -> None:
    """Cut a last line left without its newline by a killed writer, so appends start clean.

    Without this, the next record would be glued to the fragment and corrupt a middle line.
    """
    if not path.exists():
        return
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        block = min(size, 1 << 16)
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
    os.truncate(path, keep)
    warnings.warn(
        f"{path}: dropped an unfinished last line ({size - keep} bytes) left by an interrupted "
        "run; appending after the last complete record",
        LossKitWarning,
        stacklevel=4,
    )


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A reader sees the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
