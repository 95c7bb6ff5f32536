"""Files that survive a killed writer (private, shared): appended logs, whole files replaced
atomically, one writer per run folder, and the check that a name from a config file stays one
file name."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

from losskit.errors import ConfigError, LossKitWarning, RunInUseError


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


LOCK_NAME = ".lock"
# Run folders this process holds, by path: a nested lock (``losskit.run`` around
# ``Trainer.fit``) counts instead of locking again (flock would refuse its own second handle).
_held: dict[tuple[int, str], list[int]] = {}


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return f"process {text}" if text.isdigit() else "another process"


def _lock_file(path: Path) -> int:
    """Open ``path`` and hold an exclusive ``flock`` on it (POSIX); the descriptor."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunInUseError(
                f"{path.parent} is in use: {holder} is writing this run (it holds {path}); "
                "wait for it to end or stop it, or give another folder"
            ) from None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:  # else the holder removed it between our open and flock: try again
            return fd
        os.close(fd)


def _lock_file_portable(path: Path) -> int:
    """Where ``flock`` is missing: create ``path`` exclusively; a file naming a process that is
    gone is stale and taken over."""
    for _ in range(2):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            text = path.read_text(errors="replace").strip()
            if text.isdigit() and _alive(int(text)):
                raise RunInUseError(
                    f"{path.parent} is in use: process {text} is writing this run (it holds "
                    f"{path}); wait for it to end or stop it, or give another folder"
                ) from None
            path.unlink(missing_ok=True)
    raise RunInUseError(f"{path.parent} is in use: another process took {path} meanwhile")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (created with the folder) for the block: one writer per run folder.

    The file holds this process's PID, and a second process asking for it is refused at once
    with :class:`~losskit.errors.RunInUseError` naming that PID. On POSIX it is an advisory
    ``flock``, which the system drops when its holder dies: the lock of a crashed run is taken
    over without asking. The file is removed when the block ends. Nested calls in one process
    share the lock.

    Example::

        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with run_lock(folder):
        ...     (folder / ".lock").read_text() == f"{os.getpid()}\\n"
        True
        >>> (folder / ".lock").exists()
        False
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    key = (os.getpid(), str(path.resolve()))
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    try:
        fd = _lock_file(path)
    except ImportError:  # no fcntl (Windows)
        fd = _lock_file_portable(path)
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = [fd, 1]
        yield
    finally:
        _held.pop(key, None)
        # Removed while still held, so that no other process finds a file it could lock anew.
        path.unlink(missing_ok=True)
        os.close(fd)
