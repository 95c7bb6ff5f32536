"""One trial's run: its folder, its configuration as TOML, and ``losskit run`` in a subprocess.

A grid's runs live in ``out/<variant>/seed<k>/`` (``out/compare.json`` records the grid); a
tune's in ``out/trials/<key>/``. A run is complete when its ``summary.json`` exists
(``losskit run`` writes it last, by rename). Each run is a child process that dies with the
process that started it, so that a killed worker leaves no orphan writing a run folder.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_config({"run": {"name": "x", "out": None}, "terms": {}}, folder)
    >>> path.read_text()
    '[run]\\nname = "x"\\n\\n[terms]\\n'
    >>> is_complete(folder)
    False
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losskit._io import replace_text
from losskit.errors import ConfigError
from losskit.experiments._grid import Variant, with_seed

if TYPE_CHECKING:
    from losskit.config import RunConfig

__all__ = [
    "MANIFEST",
    "Job",
    "Outcome",
    "is_complete",
    "plan",
    "run_job",
    "write_config",
    "write_manifest",
]

MANIFEST = "compare.json"
CONFIG = "trial.toml"


@dataclass(frozen=True)
class Job:
    """One run of the grid: a variant at a seed, and its folder."""

    variant: str
    seed: int
    folder: Path
    config: dict[str, Any]

    @property
    def key(self) -> str:
        """The trial key of this run in the study: ``<variant>/seed<k>``."""
        return f"{self.variant}/seed{self.seed}"


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``"complete"``, ``"pruned"`` (with the reason) or ``"failed"``."""

    state: str
    reason: str = ""


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


def _without_none(value: Any) -> Any:
    """TOML has no null: a ``None`` setting is left out (the run fills in its default)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def write_config(config: dict[str, Any], folder: Path, name: str = CONFIG) -> Path:
    """Write ``config`` (a dumped RunConfig) as a TOML file ``losskit run`` accepts."""
    import tomli_w

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    replace_text(path, tomli_w.dumps(_without_none(config)))
    return path


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """End this process when ``parent`` dies, so that no orphan goes on writing a run folder.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread polls ``os.getppid()`` (an orphan is re-parented) twice a second.
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


def child(argv: Sequence[str] | None = None) -> None:
    """A trial's process: ``PARENT_PID losskit-arguments...``; dies with its parent, then runs
    the ``losskit`` command (armed here, not in a ``preexec_fn``, which is unsafe in a parent
    with threads)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _die_with(int(args[0]))
    from losskit.cli import main

    sys.argv = ["losskit", *args[1:]]
    main()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def run_job(
    config: dict[str, Any],
    folder: Path,
    *,
    check: Callable[[], str | None] | None = None,
    poll: float = 0.25,
    threads: int | None = None,
) -> Outcome:
    """Run ``config`` into ``folder`` as ``losskit run`` in a child process.

    ``check`` is called every ``poll`` seconds while the run trains; a reason it returns stops
    the run (``"pruned"``). The child is killed when this thread or process ends.
    """
    if threads is not None and config.get("run", {}).get("threads") is None:
        config = {**config, "run": {**config.get("run", {}), "threads": threads}}
    path = write_config(config, folder)
    launch = "from losskit.experiments._runner import child; child()"
    command = [sys.executable, "-c", launch, str(os.getpid())]
    command += ["run", str(path), "--out", str(folder), "--quiet", "--no-report"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with (folder / "trial.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            while process.poll() is None:
                time.sleep(poll)
                reason = check() if check is not None else None
                if reason is not None and process.poll() is None:
                    _stop(process)
                    return Outcome("pruned", reason)
        except BaseException:
            _stop(process)
            raise
    if process.returncode == 0 and is_complete(folder):
        return Outcome("complete")
    tail = (folder / "trial.log").read_text(errors="replace").strip().splitlines()[-5:]
    return Outcome("failed", f"losskit run exited with {process.returncode}: {' | '.join(tail)}")
