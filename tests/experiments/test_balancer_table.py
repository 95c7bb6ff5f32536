"""The balancer table's configs and driver (benchmarks/balancer_table.py) at a tiny budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_two_methods_two_seeds_on_both_tasks(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "balancer_table.py"),
            "--methods",
            "sum,mgda",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--jobs",
            "1",
            "--no-memory",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["methods"] == 2
    assert set(figures["tasks"]) == {"multidigits", "demo_tasks"}
    for task, metric in (("multidigits", "mean_accuracy"), ("demo_tasks", "accuracy")):
        rows = figures["tasks"][task]
        assert set(rows) == {"sum", "mgda"}
        assert rows["sum"]["step_vs_sum"] == 1.0
        assert rows["mgda"]["spec"] == {"name": "mgda", "shared": "trunk"}
        finals = {}
        for path in sorted((tmp_path / task).glob("*/seed*/summary.json")):
            summary = json.loads(path.read_text())
            config = json.loads((path.parent / "config.json").read_text())
            balancer = config["balancer"]
            name = balancer if isinstance(balancer, str) else balancer["name"]
            finals.setdefault(name, []).append(summary["final"]["val"][f"metric/{metric}"])
        for name, values in finals.items():
            assert len(values) == 2
            assert rows[name]["mean"] == pytest.approx(sum(values) / 2, rel=1e-12)
            low, high = rows[name]["ci95"]
            half = 12.706 * abs(values[0] - values[1]) / 2**0.5 / 2**0.5
            assert high - low == pytest.approx(2 * half, rel=1e-6)
        assert figures["sum_within_ci_of_best"] == (
            figures["tasks"]["multidigits"]["sum"]["tier"] == 1
            and figures["tasks"]["demo_tasks"]["sum"]["tier"] == 1
        )
