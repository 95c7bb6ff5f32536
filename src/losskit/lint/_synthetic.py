"""Synthetic two-term logs with planted patterns, to test a linter against known answers.

:func:`two_term_log` writes, through a real :class:`~losskit.tracking.Tracker`, the log of a
run with terms ``a`` and ``b`` (``b`` weighted by ``wb``), 4% multiplicative noise per step, the
training split logged every ``every`` steps and a validation split every ``val_every`` steps
(each an epoch). Each curve is a function of the step, so a pattern is planted by replacing one.

Example::

    >>> import math, tempfile
    >>> from pathlib import Path
    >>> from losskit.lint import lint
    >>> run = Path(tempfile.mkdtemp())
    >>> nan_from_137 = lambda step: math.nan if step >= 137 else decay_b(step)
    >>> [(f.key, f.kind, f.start) for f in lint(two_term_log(run, b=nan_from_137))]
    [('loss', 'nonfinite', 137), ('loss/b', 'nonfinite', 137)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from losskit.tracking import Tracker, sinks

__all__ = ["Curve", "decay_a", "decay_b", "two_term_log", "warm_up"]

Curve = Callable[[int], float]
"""A value as a function of the optimizer step (from 1)."""


def decay_a(step: int) -> float:
    """The healthy curve of term ``a``: an exponential decay towards 0.3."""
    return 2.0 * math.exp(-step / 100) + 0.3


def decay_b(step: int) -> float:
    """The healthy curve of term ``b``: a slower decay towards 0.1."""
    return 0.5 * math.exp(-step / 150) + 0.1


def warm_up(step: int) -> float:
    """The healthy weight of ``b``: a linear warm-up from 0 to 1 over 100 steps."""
    return min(1.0, step / 100)


def two_term_log(
    run: Path,
    a: Curve = decay_a,
    b: Curve = decay_b,
    wb: Curve = warm_up,
    val_a: Curve | None = None,
    *,
    seed: int = 0,
    steps: int = 300,
    every: int = 10,
    val_every: int = 25,
) -> Path:
    """Write the log of a two-term run into ``run`` (``metrics.jsonl``) and return ``run``.

    The validation values are ``val_a`` (default 1.1 x ``a``) and 1.1 x the healthy ``b``.
    """
    g = torch.Generator().manual_seed(seed)
    val_a = val_a or (lambda s: 1.1 * decay_a(s))
    with Tracker([sinks.JSONL(run)], every=every) as tracker:
        for step in range(1, steps + 1):
            noise = 1.0 + 0.04 * torch.randn(2, generator=g)
            la, lb, w = a(step) * float(noise[0]), b(step) * float(noise[1]), wb(step)
            tracker.update(
                {
                    "loss": torch.tensor(la + w * lb),
                    "loss/a": torch.tensor(la),
                    "loss/b": torch.tensor(lb),
                    "weight/a": torch.tensor(1.0),
                    "weight/b": torch.tensor(w),
                }
            )
            if step % val_every == 0:
                va, vb = val_a(step), 1.1 * decay_b(step)
                tracker.update(
                    {
                        "loss": torch.tensor(va + w * vb),
                        "loss/a": torch.tensor(va),
                        "loss/b": torch.tensor(vb),
                    },
                    split="val",
                )
                tracker.end_epoch()
    return run
