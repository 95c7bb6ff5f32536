"""One thing the linter found in a run's log: which key, what, where, and what to do.

Example::

    >>> from losskit.lint import Finding
    >>> f = Finding("loss/reg", "divergence", 120, 300, message="rose 3.1x above its minimum",
    ...             advice="lower the learning rate")
    >>> f.severity, f.to_dict()["steps"]
    ('error', [120, 300])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["KINDS", "Finding", "Severity"]

Severity = Literal["error", "warning"]

KINDS: dict[str, Severity] = {
    "nonfinite": "error",
    "divergence": "error",
    "spike": "warning",
    "plateau": "warning",
    "overfitting": "warning",
    "oscillation": "warning",
    "share_collapse": "warning",
    "share_dominance": "warning",
    "term_diverges_while_total_falls": "warning",
    "schedule_ends_while_rising": "warning",
}
"""Every kind of finding and its severity (``error``: the run's result is not to be trusted)."""


@dataclass(frozen=True)
class Finding:
    """A pattern seen in one key of one split over a range of training steps.

    Attributes:
        key: the logged name (``"loss"`` for the total, ``"loss/<key>"`` for a term).
        kind: one of :data:`KINDS`.
        start, end: the range of training steps where it shows (inclusive).
        split: the split it was seen in.
        message: what was seen, with the numbers.
        advice: what to try.
        run: the run folder (set when several runs are linted).
    """

    key: str
    kind: str
    start: int
    end: int
    split: str = "train"
    message: str = ""
    advice: str = ""
    run: str = ""
    severity: Severity = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; kinds are {sorted(KINDS)}")
        object.__setattr__(self, "severity", KINDS[self.kind])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``steps`` is ``[start, end]``)."""
        return {
            "run": self.run,
            "split": self.split,
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "steps": [self.start, self.end],
            "message": self.message,
            "advice": self.advice,
        }

    def __str__(self) -> str:
        where = f"{self.run}: " if self.run else ""
        return (
            f"{where}{self.severity} {self.kind} in {self.split}/{self.key}, steps "
            f"{self.start}-{self.end}: {self.message}. {self.advice}"
        )
