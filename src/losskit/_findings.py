"""One thing a check found (private, shared): the doctor's and the run linter's findings.

A finding names its kind, how serious it is, the key it is filed under, what was seen and what
to do. The run linter adds where in the log it shows (split and step range, and the run when
several are linted); the doctor the second key of a conflict and the parameters concerned.
``losskit.lint`` and ``losskit.diagnostics`` both export this one :class:`Finding`.

Example::

    >>> from losskit.lint import Finding, finding
    >>> f = finding("loss/reg", "divergence", 120, 300, message="rose 3.1x above its minimum",
    ...             advice="lower the learning rate")
    >>> f.severity, f.to_dict()["steps"]
    ('error', [120, 300])
    >>> Finding("conflict", "warning", "a", "a and b pull apart", other="b").other
    'b'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["KINDS", "Finding", "Severity", "finding"]

Severity = Literal["error", "warning"]
"""``"error"``: training (or its result) is not to be trusted; ``"warning"``: it is hurt."""

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
"""Every kind of run-linter finding and its severity."""


@dataclass(frozen=True)
class Finding:
    """A problem: its kind, how serious, under which key, what was seen and what to do.

    Attributes:
        kind: the run linter's (one of :data:`KINDS`) or the doctor's (``"contract"``,
            ``"conflict"``, ``"dominates"``, ...).
        severity: ``"error"`` or ``"warning"``.
        key: the key or logged name (``"loss/<key>"``) it is filed under; ``None``: none.
        message: what was seen, with the numbers.
        other: the second key of a conflict, or the runner-up of a dominating key.
        parameters: the parameters concerned.
        advice: what to try (the doctor's messages hold their advice).
        split, start, end: where a pattern shows in a run's log (inclusive step range).
        run: the run folder (set when several runs are linted).
    """

    kind: str
    severity: Severity
    key: str | None
    message: str = ""
    other: str | None = None
    parameters: tuple[str, ...] = ()
    advice: str = ""
    split: str = ""
    start: int = 0
    end: int = 0
    run: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``steps`` is ``[start, end]``)."""
        data: dict[str, Any] = {
            "run": self.run,
            "split": self.split,
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "steps": [self.start, self.end],
            "message": self.message,
            "advice": self.advice,
        }
        if self.other is not None or self.parameters:
            data |= {"other": self.other, "parameters": list(self.parameters)}
        return data

    def __str__(self) -> str:
        where = f"{self.run}: " if self.run else ""
        place = f"{self.split}/{self.key}" if self.split else str(self.key or "-")
        steps = f", steps {self.start}-{self.end}" if self.split else ""
        advice = f". {self.advice}" if self.advice else ""
        return f"{where}{self.severity} {self.kind} in {place}{steps}: {self.message}{advice}"


def finding(
    key: str,
    kind: str,
    start: int,
    end: int,
    split: str = "train",
    message: str = "",
    advice: str = "",
    run: str = "",
) -> Finding:
    """A run-linter finding: ``kind`` one of :data:`KINDS`, which gives its severity."""
    if kind not in KINDS:
        raise ValueError(f"unknown finding kind {kind!r}; kinds are {sorted(KINDS)}")
    return Finding(
        kind, KINDS[kind], key, message, advice=advice, split=split, start=start, end=end, run=run
    )
