"""The linter on synthetic logs: each planted pattern is found under its key, at its steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losskit.cli import app
from losskit.lint import Finding, lint
from losskit.lint._synthetic import Curve, decay_a, decay_b, two_term_log

STEPS, EVERY, VAL_EVERY = 300, 10, 25


_a, _b = decay_a, decay_b


def write_log(run: Path, *curves: Curve, seed: int = 0, **named: Curve) -> Path:
    return two_term_log(
        run, *curves, seed=seed, steps=STEPS, every=EVERY, val_every=VAL_EVERY, **named
    )


def _only(found: list[Finding], key: str, kind: str) -> Finding:
    hits = [f for f in found if f.key == key and f.kind == kind]
    assert len(hits) == 1, found
    return hits[0]


def _near(step: int, planted: int, within: int = EVERY) -> bool:
    return abs(step - planted) <= within


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_logs_have_no_findings(tmp_path: Path, seed: int) -> None:
    assert lint(write_log(tmp_path, seed=seed)) == []


def test_nonfinite_onset(tmp_path: Path) -> None:
    found = lint(write_log(tmp_path, b=lambda s: math.nan if s >= 137 else _b(s)))
    finding = _only(found, "loss/b", "nonfinite")
    assert (finding.start, finding.end) == (137, STEPS)
    assert finding.severity == "error"
    assert {(f.key, f.kind) for f in found} == {("loss/b", "nonfinite"), ("loss", "nonfinite")}


def test_spike(tmp_path: Path) -> None:
    found = lint(write_log(tmp_path, a=lambda s: 10 * _a(s) if s == 163 else _a(s)))
    finding = _only(found, "loss/a", "spike")
    assert (finding.start, finding.end) == (163, 163)
    assert {(f.key, f.kind) for f in found} == {("loss/a", "spike"), ("loss", "spike")}


def test_divergence(tmp_path: Path) -> None:
    found = lint(write_log(tmp_path, a=lambda s: _a(min(s, 180)) * math.exp(max(0, s - 180) / 40)))
    finding = _only(found, "loss/a", "divergence")
    assert _near(finding.start, 180)
    assert finding.end == STEPS
    assert {f.kind for f in found} == {"divergence"}
    assert {f.key for f in found} == {"loss/a", "loss"}


def test_term_diverges_while_total_falls(tmp_path: Path) -> None:
    # b weighs 0.1 and triples from step 150 on, while a keeps falling: the total falls.
    found = lint(
        write_log(
            tmp_path,
            a=lambda s: 4.0 * math.exp(-s / 60) + 0.05,
            b=lambda s: 0.2 * (1 + 2 * max(0, s - 150) / 150),
            wb=lambda s: 0.1,
        )
    )
    finding = _only(found, "loss/b", "term_diverges_while_total_falls")
    assert _near(finding.start, 150)
    assert not [f for f in found if f.kind == "divergence"]  # restated, not reported twice


def test_plateau_at_the_start(tmp_path: Path) -> None:
    found = lint(
        write_log(tmp_path, a=lambda s: 2.3 if s <= 150 else 2.0 * math.exp(-(s - 150) / 60) + 0.3)
    )
    finding = _only(found, "loss/a", "plateau")
    assert finding.start == 1
    assert _near(finding.end, 150)
    assert {f.key for f in found} <= {"loss/a", "loss"}


def test_overfitting_onset(tmp_path: Path) -> None:
    found = lint(
        write_log(tmp_path, val_a=lambda s: 1.1 * _a(min(s, 200)) * (1 + 0.004 * max(0, s - 200)))
    )
    finding = _only(found, "loss/a", "overfitting")
    assert finding.split == "val"
    assert _near(finding.start, 200, within=VAL_EVERY)
    assert finding.end == STEPS
    assert {f.kind for f in found} == {"overfitting"}


def test_oscillation(tmp_path: Path) -> None:
    swing = (0.0, 1.0, 0.0, -1.0)  # period 4

    def a(step: int) -> float:
        return _a(step) * (1 + (0.3 * swing[step % 4] if step >= 120 else 0.0))

    found = lint(write_log(tmp_path, a=a))
    finding = _only(found, "loss/a", "oscillation")
    assert _near(finding.start, 120)
    assert _near(finding.end, STEPS)
    assert {f.kind for f in found} == {"oscillation"}


def test_share_collapse_and_dominance(tmp_path: Path) -> None:
    found = lint(write_log(tmp_path, b=lambda s: _b(s) if s < 120 else 1e-5, wb=lambda s: 1.0))
    collapse = _only(found, "loss/b", "share_collapse")
    dominance = _only(found, "loss/a", "share_dominance")
    for finding in (collapse, dominance):
        assert _near(finding.start, 120)
        assert finding.end == STEPS


def test_schedule_ending_while_its_term_rises(tmp_path: Path) -> None:
    def b(step: int) -> float:
        if step < 100:
            return 0.2
        if step <= 200:
            return 0.2 + 0.004 * (step - 100)
        return 0.6 - 0.004 * (step - 200)

    found = lint(write_log(tmp_path, b=b, wb=lambda s: min(1.0, s / 150)))
    finding = _only(found, "loss/b", "schedule_ends_while_rising")
    assert _near(finding.start, 151)
    assert _near(finding.end, 200)


def test_cli_exit_code_and_json(tmp_path: Path) -> None:
    clean = write_log(tmp_path / "clean")
    sick = write_log(tmp_path / "sick", b=lambda s: math.nan if s >= 137 else _b(s))
    runner = CliRunner()
    ok = runner.invoke(app, ["lint", str(clean)])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["lint", str(clean), str(sick), "--json"])
    assert bad.exit_code == 1
    payload = json.loads(bad.output)
    assert {(f["run"], f["key"], f["kind"]) for f in payload} == {
        (str(sick), "loss/b", "nonfinite"),
        (str(sick), "loss", "nonfinite"),
    }
    missing = runner.invoke(app, ["lint", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2


def test_every_report_has_a_findings_section(tmp_path: Path) -> None:
    from losskit.report import render

    clean = render(write_log(tmp_path / "clean")).read_text()
    assert "<h2>Findings</h2>" in clean
    assert "No findings" in clean
    sick = render(write_log(tmp_path / "sick", a=lambda s: 10 * _a(s) if s == 163 else _a(s)))
    text = sick.read_text()
    assert "<h2>Findings</h2>" in text
    assert "train/loss/a" in text
    assert "163–163" in text
