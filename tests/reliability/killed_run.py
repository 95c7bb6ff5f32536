"""Run the ``losskit`` command, SIGKILLing itself right after optimizer step N.

    python killed_run.py N run CONFIG --out DIR [...]

Tests start it as a subprocess to kill a run at a chosen point, mid-epoch included.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from torch.optim.optimizer import register_optimizer_step_post_hook

from losskit.cli import app


def main() -> None:
    kill_at, steps = int(sys.argv[1]), [0]

    def die_at_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        steps[0] += 1
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    register_optimizer_step_post_hook(die_at_step)
    app(sys.argv[2:])


if __name__ == "__main__":
    main()
