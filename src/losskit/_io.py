"""Files that survive a killed writer (private, shared): appended logs, whole files replaced
atomically, and the check that a name from a config file stays one file name."""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PureWindowsPath

from losskit.errors import ConfigError, LossKitWarning


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


_MAX_NAME_BYTES = 255  # the longest file name common file systems take


def file_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be one file or folder name inside a folder (``None`` when it can).

    Refused: empty names, ``.`` and ``..``, path separators (``/``, ``\\``), drives, control
    characters, and names longer than 255 bytes: any of them would let a name from a config
    file write outside the folder meant for it (an absolute path holds a separator).
    """
    if not value:
        problem = "it is empty"
    elif value in (".", ".."):
        problem = "it names a folder itself, not a name inside one"
    elif "/" in value or "\\" in value:
        problem = "it holds a path separator ('/' or '\\')"
    elif PureWindowsPath(value).drive:
        problem = "it names a drive"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        problem = "it holds a control character"
    elif len(value.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        problem = f"it is longer than {_MAX_NAME_BYTES} bytes"
    else:
        return None
    return (
        f"{value!r} cannot be a file name: {problem}; give a plain name such as 'demo' "
        "(to write elsewhere, give the folder itself: [run] out or --out)"
    )


def check_file_name(field: str, value: str) -> str:
    """``value`` when it can be one file or folder name, else a
    :class:`~losskit.errors.ConfigError` naming ``field``, ``value`` and what is wrong.

    Example::

        >>> check_file_name("run.name", "demo")
        'demo'
        >>> check_file_name("run.name", "../../x")
        Traceback (most recent call last):
        ...
        losskit.errors.ConfigError: run.name = '../../x' cannot be a file name: it holds a path ...
    """
    problem = file_name_problem(value)
    if problem is not None:
        raise ConfigError(f"{field} = {problem}")
    return value
