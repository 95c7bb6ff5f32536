"""Compare report: with one trained term the total and that term are shown once (#20 item 12)."""

from __future__ import annotations

from pathlib import Path

from losskit.experiments._report import (
    Comparison,
    Row,
    Spread,
    _distinct,
    _echoes,
    _table_section,
)
from losskit.lint import Finding


def _comparison(findings: tuple[Finding, ...], monitored: tuple[str, ...] = ()) -> Comparison:
    a, b = Spread.of([0.5, 0.7]), Spread.of([0.2, 0.4])
    rows = []
    for variant in ("v1", "v2"):
        rows += [
            Row(variant, "val/loss", a, b),
            Row(variant, "val/loss/cls", a, b),  # the only trained term: the total again
            Row(variant, "val/loss/l1", b, b),  # a monitor-only term
            Row(variant, "val/metric/accuracy", b, a),
        ]
    return Comparison(
        out=Path("."),
        variants=("v1", "v2"),
        labels={"v1": "v1", "v2": "v2"},
        seeds=(0, 1),
        rows=tuple(rows),
        step_ms={},
        rank_by="val/loss",
        mode="min",
        interval="range",
        ranking=(),
        monitored=monitored,
        runs={"v1": (), "v2": ()},
        findings=findings,
    )


def _finding(key: str, run: str = "v1/seed0", kind: str = "plateau") -> Finding:
    return Finding(kind, "warning", key, "flat", split="val", start=3, end=9, run=run)


def test_the_total_of_one_trained_term_is_shown_once() -> None:
    c = _comparison((), monitored=("l1",))
    assert _echoes(c) == {"val/loss/cls"}
    table = _table_section(c)
    assert ">val/loss<" in table
    assert "val/loss/cls" not in table
    assert "val/loss/l1 (monitor-only)" in table
    # a row that differs from the total in any variant is kept
    other = _comparison(())
    rows = list(other.rows)
    rows[1] = Row("v1", "val/loss/cls", Spread.of([0.5, 0.71]), rows[1].best)
    changed = Comparison(**{**other.__dict__, "rows": tuple(rows)})
    assert "val/loss/cls" not in _echoes(changed)


def test_a_finding_repeated_on_the_echoing_key_is_listed_once_per_run() -> None:
    repeated = (
        _finding("loss"),
        _finding("loss/cls"),  # the same cause, filed again under the term: left out
        _finding("loss/cls", run="v2/seed0"),  # no total finding in that run: kept
        _finding("loss/l1"),  # another key: kept
        _finding("loss/cls", kind="spike"),  # another kind: kept
    )
    c = _comparison(repeated, monitored=("l1",))
    shown = _distinct(c)
    assert [(f.key, f.run, f.kind) for f in shown] == [
        ("loss", "v1/seed0", "plateau"),
        ("loss/cls", "v2/seed0", "plateau"),
        ("loss/l1", "v1/seed0", "plateau"),
        ("loss/cls", "v1/seed0", "spike"),
    ]
