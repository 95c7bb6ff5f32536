"""`compare`: a grid of runs over seeds, resumable, parallel, and one report that matches them."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

import losskit as lk
from losskit.config import RunConfig, load_config
from losskit.experiments._grid import apply, expand, parse_vary, with_seed
from losskit.run import build

DEMO = resources.files("losskit").joinpath("demo.toml")


def tiny() -> RunConfig:
    """The demo, 2 epochs of a narrow network."""
    raw = load_config(DEMO).model_dump(mode="json")  # type: ignore[arg-type]
    raw["run"]["epochs"] = 2
    raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
    raw["scheduler"]["options"]["T_max"] = 2
    return load_config(raw)


def test_vary_values_are_typed_and_paths_checked() -> None:
    assert parse_vary("optimizer.lr=1e-3, 3e-3") == ("optimizer.lr", [0.001, 0.003])
    assert parse_vary("terms.reg.loss=mse,l1,huber") == ("terms.reg.loss", ["mse", "l1", "huber"])
    assert parse_vary("terms.ink.options={ delta = 0.5 },{ delta = 1.0 }")[1] == [
        {"delta": 0.5},
        {"delta": 1.0},
    ]
    with pytest.raises(lk.ConfigError, match="has no table 'nope'"):
        apply(tiny(), [("terms.nope.loss", "l1")])
    with pytest.raises(lk.ConfigError, match=r"terms\.recon\.loss=focal_typo"):
        expand(tiny(), {"terms.recon.loss": ["focal_typo"]})
    with pytest.raises(lk.ConfigError, match=r"terms\.ink: unknown field 'delta'"):
        expand(tiny(), {"terms.ink.loss": ["l1"]})  # delta belongs to huber


def test_every_variant_starts_from_the_same_initialisation_per_seed() -> None:
    variants = expand(tiny(), {"terms.recon.loss": ["mse", "l1"], "balancer": ["sum", "mean"]})
    states = []
    for variant in variants:
        trainer, train, _ = build(with_seed(variant.config, 5), progress=False)
        states.append((trainer.model.state_dict(), next(iter(train))["label"]))
    for state, labels in states[1:]:
        for name, tensor in state.items():
            assert torch.equal(tensor, states[0][0][name]), name
        assert torch.equal(labels, states[0][1])  # the same first batch
    other, _, _ = build(with_seed(variants[0].config, 6), progress=False)
    assert not torch.equal(other.model.state_dict()["ink.weight"], states[0][0]["ink.weight"])


def _summaries(out: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*/seed*/summary.json")):
        found.setdefault(path.parent.parent.name, []).append(json.loads(path.read_text()))
    return found


def test_tiny_grid_folders_and_report_match_the_runs(tmp_path: Path) -> None:
    base = tiny().model_dump(mode="json")
    base["terms"]["recon_l1"] = {
        "loss": "l1",
        "input": "recon",
        "target": "pixels",
        "monitor": True,
    }
    result = lk.experiments.compare(
        base, vary={"terms.recon.loss": ["mse", "smooth_l1"]}, seeds=2, out=tmp_path
    )
    folders = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/seed*"))
    assert folders == [
        "terms.recon.loss=mse/seed0",
        "terms.recon.loss=mse/seed1",
        "terms.recon.loss=smooth_l1/seed0",
        "terms.recon.loss=smooth_l1/seed1",
    ]
    assert len(result.ran) == 4
    assert result.skipped == ()
    summaries = _summaries(tmp_path)
    c = result.comparison
    for variant, runs in summaries.items():
        for key in ("loss", "loss/cls", "loss/recon_l1", "metric/accuracy"):
            finals = [r["final"]["val"][key] for r in runs]
            row = c.row(variant, f"val/{key}")
            assert row.final.mean == pytest.approx(sum(finals) / len(finals), rel=1e-12)
            assert row.final.std == pytest.approx(statistics.stdev(finals), rel=1e-9)
            assert (row.final.low, row.final.high) == (min(finals), max(finals))
        ranked = next(r for r in c.ranking if r.variant == variant)
        bests = [r["best_value"] for r in runs]
        assert ranked.value.mean == pytest.approx(sum(bests) / 2, rel=1e-12)
        steps = [1000 * r["seconds"] / r["steps"] for r in runs]
        assert c.step_ms[variant].mean == pytest.approx(sum(steps) / 2, rel=1e-12)
    page = result.report.read_text()
    assert result.report == tmp_path / "compare.html"
    assert "<script src" not in page  # the chart library is inlined, nothing is fetched
    for section in (
        "Grid",
        "Ranking",
        "Final and best values",
        "Time per step",
        "Curves",
        "Findings",
    ):
        assert f"<h2>{section}</h2>" in page
    assert "val/loss/recon_l1 (monitor-only)" in page
    mean = c.row("terms.recon.loss=mse", "val/loss/cls").final.mean
    assert f"<td>{mean:.4g}</td>" in page
    found = re.search(r'<script type="application/json" id="losskit-charts">(.*?)</script>', page)
    assert found
    charts = {chart["title"]: chart for chart in json.loads(found.group(1))["charts"]}
    assert len(charts) >= 5
    for variant in c.variants:  # the variants overlaid: each mean line ends at its final mean
        (line,) = [s for s in charts["val/loss"]["series"] if s["label"] == c.labels[variant]]
        last = [v for v in line["y"] if v is not None][-1]
        assert last == pytest.approx(c.row(variant, "val/loss").final.mean, rel=1e-6)
    _cli_prints_the_same_ranking_as_json_and_at_80_columns(tmp_path, base, result)


def _cli_prints_the_same_ranking_as_json_and_at_80_columns(
    out: Path, base: dict[str, Any], result: Any
) -> None:
    """The finished grid again from the command line: nothing runs, the ranking prints."""
    from typer.testing import CliRunner

    from losskit.cli import app
    from losskit.experiments._runner import write_config

    config = write_config(base, out.parent, "base.toml")
    args = ["compare", str(config), "--vary", "terms.recon.loss=mse,smooth_l1", "--seeds", "2"]
    args += ["--out", str(out)]
    runner = CliRunner()
    shown = runner.invoke(app, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["caveat"] == ""  # two seeds: intervals, not points
    c = result.comparison
    assert [r["variant"] for r in payload["ranking"]] == [r.variant for r in c.ranking]
    assert [r["value"]["mean"] for r in payload["ranking"]] == [r.value.mean for r in c.ranking]
    key = payload["variants"]["terms.recon.loss=mse"]["keys"]["val/loss/cls"]
    assert key["final"]["mean"] == c.row("terms.recon.loss=mse", "val/loss/cls").final.mean
    table = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "ran 0 run(s), 4 already complete" in table.output
    assert "one seed per variant" not in table.output
    lines = table.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "variants: terms.recon.loss" in table.output
    assert any(" mse " in line for line in lines)
    assert any(" smooth_l1 " in line for line in lines)
    assert "terms.recon.loss=mse" not in table.output  # the shared path is said once


def test_ranking_groups_overlapping_intervals() -> None:
    from losskit.experiments._report import Spread, _rank

    values = {
        "a": Spread.of([1.0, 1.2, 1.1]),
        "b": Spread.of([1.15, 1.3, 1.25]),  # overlaps a
        "c": Spread.of([2.0, 2.1, 2.2]),  # apart
    }
    ranks = {r.variant: r for r in _rank(values, "min", "range")}
    assert (ranks["a"].tier, ranks["b"].tier, ranks["c"].tier) == (1, 1, 2)
    assert ranks["a"].ties == ("b",)
    assert ranks["c"].ties == ()
    # with mean ± std the intervals of a and b (1.1 ± 0.1, 1.233 ± 0.076) still overlap
    assert {r.variant: r.tier for r in _rank(values, "min", "std")} == {"a": 1, "b": 1, "c": 2}


def test_killed_compare_reruns_only_the_missing_runs(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    text = DEMO.read_text()
    text = text.replace("epochs = 20", "epochs = 2").replace("T_max = 20", "T_max = 2")
    config.write_text(text.replace("hidden = 128, bottleneck = 32", "hidden = 16, bottleneck = 8"))
    out = tmp_path / "grid"
    command = [
        sys.executable,
        "-m",
        "losskit",
        "compare",
        str(config),
        "--vary",
        "terms.recon.loss=mse,l1",
        "--seeds",
        "3",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/seed*/summary.json")):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.parent: p.stat().st_mtime_ns for p in out.glob("*/seed*/summary.json")}
    assert 1 <= len(done) < 6
    result = lk.experiments.compare(
        config, vary={"terms.recon.loss": ["mse", "l1"]}, seeds=3, out=out
    )
    assert set(result.skipped) == set(done)
    assert len(result.ran) == 6 - len(done)
    for folder, mtime in done.items():
        assert (folder / "summary.json").stat().st_mtime_ns == mtime  # not run again
    assert len(list(out.glob("*/seed*/summary.json"))) == 6
    with pytest.raises(lk.ConfigError, match="holds another grid"):
        lk.experiments.compare(config, vary={"terms.recon.loss": ["mse"]}, seeds=3, out=out)


def test_parallel_jobs_give_the_same_runs_as_one_process(tmp_path: Path) -> None:
    vary = {"terms.recon.loss": ["mse", "l1"]}
    serial = lk.experiments.compare(tiny(), vary=vary, seeds=1, out=tmp_path / "serial")
    parallel = lk.experiments.compare(tiny(), vary=vary, seeds=1, out=tmp_path / "parallel", jobs=2)
    assert len(parallel.ran) == 2
    # One seed: every interval is a point, so the report and the CLI say the tiers separate noise.
    assert serial.comparison.caveat.startswith("one seed per variant")
    assert serial.comparison.caveat in serial.report.read_text()
    for variant in serial.comparison.variants:
        a = serial.comparison.row(variant, "val/loss").final.mean
        b = parallel.comparison.row(variant, "val/loss").final.mean
        assert a == b


def test_cli_refuses_a_bad_grid_before_running(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from losskit.cli import app

    config = tmp_path / "demo.toml"
    config.write_text(DEMO.read_text())
    runner = CliRunner()
    out = tmp_path / "grid"
    result = runner.invoke(
        app, ["compare", str(config), "--vary", "terms.cls.lossy=mse", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "terms.cls.lossy" in result.output
    assert not list(out.glob("*/seed*"))  # nothing ran
    bad = runner.invoke(app, ["compare", str(config), "--vary", "balancer", "--out", str(out)])
    assert bad.exit_code == 2
    assert "PATH=VALUE" in bad.output


def test_ci95_interval_is_students_t_and_ranks_on_it() -> None:
    from scipy import stats

    from losskit.experiments._report import Spread, _rank

    values = [0.91, 0.93, 0.94, 0.92, 0.95]
    spread = Spread.of(values)
    half = stats.t.ppf(0.975, 4) * statistics.stdev(values) / len(values) ** 0.5
    low, high = spread.interval("ci95")
    assert low == pytest.approx(statistics.fmean(values) - half, rel=1e-4)
    assert high == pytest.approx(statistics.fmean(values) + half, rel=1e-4)
    for n in (2, 11, 31, 45, 200):
        got = Spread.of([float(i % 3) for i in range(n)]).interval("ci95")
        exact = stats.t.ppf(0.975, n - 1) * statistics.stdev([float(i % 3) for i in range(n)])
        assert got[1] - got[0] == pytest.approx(2 * exact / n**0.5, rel=2e-3)
    assert Spread.of([0.5]).interval("ci95") == (0.5, 0.5)
    # ranges overlap, 95% intervals of the mean do not
    a, b = Spread.of([1.0, 1.1, 1.2, 1.1, 1.0, 1.1]), Spread.of([1.15, 1.3, 1.25, 1.3, 1.2, 1.3])
    assert a.overlaps(b, "range")
    assert not a.overlaps(b, "ci95")
    assert {r.variant: r.tier for r in _rank({"a": a, "b": b}, "min", "ci95")} == {"a": 1, "b": 2}


def test_rank_on_final_uses_the_last_epoch(tmp_path: Path) -> None:
    from losskit.experiments._report import summarize_grid

    lk.experiments.compare(tiny(), vary={"terms.recon.loss": ["mse", "l1"]}, seeds=1, out=tmp_path)
    summaries = _summaries(tmp_path)
    differs = 0
    for key in ("val/loss/cls", "val/loss/recon", "val/loss/ink", "val/metric/accuracy"):
        split, _, name = key.partition("/")
        final = summarize_grid(tmp_path, rank_by=key, rank_on="final", with_findings=False)
        best = summarize_grid(tmp_path, rank_by=key, with_findings=False)
        for rank in final.ranking:
            assert rank.value.mean == summaries[rank.variant][0]["final"][split][name]
            other = next(r for r in best.ranking if r.variant == rank.variant)
            differs += other.value.mean != rank.value.mean
    assert differs  # the run's best epoch is not always its last: the two ranks can differ
