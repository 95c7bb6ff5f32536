"""The balancer table's configs and driver (benchmarks/balancer_table.py) at a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "balancer_table.py"


def _table_module() -> object:
    loaded = importlib.util.spec_from_file_location("balancer_table", SCRIPT)
    assert loaded is not None
    assert loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_method_at_a_level_is_parsed_and_refused_where_it_cannot_apply() -> None:
    table: Any = _table_module()
    assert table.parse_method("upgrad@features") == ("upgrad", "features")
    assert table.parse_method("mgda@parameters") == ("mgda", "parameters")
    assert table.parse_method("sum") == ("sum", None)
    assert table.spec("upgrad", 10, "features") == {
        "name": "upgrad",
        "shared": "trunk",
        "level": "features",
    }
    with pytest.raises(SystemExit, match="family 'static', level 'features'"):
        table.parse_method("sum@features")
    with pytest.raises(SystemExit, match="level 'trunk'"):
        table.parse_method("mgda@trunk")


def test_three_methods_two_seeds_on_both_tasks(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--methods",
            "sum,mgda,mgda@features",
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
    assert figures["methods"] == 3
    assert set(figures["tasks"]) == {"multidigits", "demo_tasks"}
    for task, metric in (("multidigits", "mean_accuracy"), ("demo_tasks", "accuracy")):
        rows = figures["tasks"][task]
        assert set(rows) == {"sum", "mgda", "mgda@features"}
        assert rows["sum"]["step_vs_sum"] == 1.0
        assert rows["mgda"]["spec"] == {"name": "mgda", "shared": "trunk"}
        assert rows["mgda@features"]["spec"] == {
            "name": "mgda",
            "shared": "trunk",
            "level": "features",
        }
        finals = {}
        for path in sorted((tmp_path / task).glob("*/seed*/summary.json")):
            summary = json.loads(path.read_text())
            config = json.loads((path.parent / "config.json").read_text())
            balancer = config["balancer"]
            name = balancer if isinstance(balancer, str) else balancer["name"]
            if isinstance(balancer, dict) and "level" in balancer:
                name += "@" + balancer["level"]
            finals.setdefault(name, []).append(summary["final"]["val"][f"metric/{metric}"])
        assert set(finals) == set(rows)
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
