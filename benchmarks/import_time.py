"""Start-up cost of losskit and of its command against ``import torch``, in fresh interpreters.

Five commands, each a new Python process timed from spawn to exit (the interpreter's own
start-up included, the same for all):

- ``import torch``: the baseline;
- ``import losskit``: the package alone (the core is imported on first use);
- ``import losskit; losskit.Criterion``: the core (torch, the loss catalogue, the balancers);
- ``losskit --help`` and ``losskit run --help``: the command, which must not import torch.

The commands take turns (the order rotated every round) so that all of them see the same
machine; the figure of each is its minimum over the rounds (start-up time only grows with
load: the minimum is the one least disturbed). ``import_ratio`` is the core's minimum over
torch's (what a user of ``lk.Criterion`` pays on top of torch), ``help_ratio`` ``losskit
--help``'s over torch's.

    python benchmarks/import_time.py [--quick] [--rounds N]

The last line printed is a JSON object: {"import_ratio": ..., "help_ratio": ...,
"help_imports_torch": ..., "min_s": {command: seconds}}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

_HELP = "import sys; sys.argv = {argv!r}; from losskit.cli import main; main()"
_TORCH_PROBE = (
    "import atexit, sys; atexit.register(lambda: sys.__stderr__.write("
    "'TORCH=%s\\n' % ('torch' in sys.modules))); " + _HELP
)

COMMANDS = {
    "import torch": "import torch",
    "import losskit": "import losskit",
    "losskit core": "import losskit; losskit.Criterion",
    "losskit --help": _HELP.format(argv=["losskit", "--help"]),
    "losskit run --help": _HELP.format(argv=["losskit", "run", "--help"]),
}


def run_once(code: str) -> float:
    """Seconds from spawning ``python -c code`` to its exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def help_imports_torch() -> bool:
    """Whether ``losskit --help`` or ``losskit run --help`` left torch in ``sys.modules``."""
    for argv in (["losskit", "--help"], ["losskit", "run", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", _TORCH_PROBE.format(argv=argv)], capture_output=True, text=True
        )
        if "TORCH=True" in done.stderr or "TORCH=False" not in done.stderr:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 1 min)")
    parser.add_argument("--rounds", type=int, help="rounds (default 15, --quick 4)")
    args = parser.parse_args()
    rounds = args.rounds or (4 if args.quick else 15)
    names = list(COMMANDS)
    for name in names:  # warm the file cache: the first spawn of each reads from disk
        run_once(COMMANDS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(run_once(COMMANDS[name]))
    best = {name: min(t) for name, t in times.items()}
    torch_s = best["import torch"]
    print(f"{'command':<22}{'min (ms)':>10}{'median (ms)':>13}{'/ torch':>9}")
    for name in names:
        median = sorted(times[name])[len(times[name]) // 2]
        print(
            f"{name:<22}{best[name] * 1e3:>10.0f}{median * 1e3:>13.0f}{best[name] / torch_s:>9.2f}"
        )
    print(
        json.dumps(
            {
                "import_ratio": round(best["losskit core"] / torch_s, 3),
                "help_ratio": round(best["losskit --help"] / torch_s, 3),
                "help_imports_torch": help_imports_torch(),
                "bare_import_ratio": round(best["import losskit"] / torch_s, 3),
                "run_help_ratio": round(best["losskit run --help"] / torch_s, 3),
                "rounds": rounds,
                "min_s": {name: round(s, 4) for name, s in best.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
