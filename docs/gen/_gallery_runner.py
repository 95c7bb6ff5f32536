"""Runs the gallery's examples, each as ``__main__`` in a forked copy of one warm process.

``python _gallery_runner.py JOBS.json [--cold]`` imports torch (and the plotting stack) once
(not with ``--cold``), then forks a child per job that changes into the job's scratch
directory, points its standard output and error at the job's files and runs the script as
``python <path> <args>`` would, less the cost of starting Python and importing torch again (a
few seconds a script). One JSON line per job on standard output says how it ended:
``{"stem", "code", "signal", "seconds", "cpu_seconds"}``.

A job is ``{"stem", "path", "args", "scratch", "stdout", "stderr", "timeout"}``; a child that
runs over ``timeout`` seconds is killed by its alarm (``"signal": 14``).
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _warm() -> None:
    """Import what every example imports, before forking, so that each child finds it loaded."""
    import torch  # noqa: F401

    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    with contextlib.suppress(ImportError):
        import losskit.engine
        import losskit.report  # noqa: F401


def _child(job: dict[str, Any]) -> int:
    """Runs in the forked child: the script as ``__main__``; returns the exit status."""
    signal.alarm(max(1, int(job["timeout"])))
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(job["scratch"])
    path = str(job["path"])
    sys.argv = [path, *job["args"]]
    sys.path[0] = str(Path(path).parent)  # as `python path` sets it
    try:
        runpy.run_path(path, run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Fork, run ``job`` in the child, wait; how it ended and what it cost."""
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(job)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    return {
        "stem": job["stem"],
        "code": os.waitstatus_to_exitcode(status),
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main(jobs_file: str, cold: bool = False) -> None:
    jobs = json.loads(Path(jobs_file).read_text(encoding="utf-8"))
    if not cold:
        _warm()
    for job in jobs:
        print(json.dumps(run(job)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], cold="--cold" in sys.argv[2:])
