"""--json on the commands that report: parseable, and the same facts as the text."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app

runner = CliRunner()


def _json(args: list[str], code: int = 0) -> object:
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_losses_json_lists_the_catalogue() -> None:
    data = _json(["losses", "--json", "--family", "regression"])
    assert isinstance(data, list)
    names = {entry["name"] for entry in data}
    assert {"mse", "huber"} <= names
    assert names == {s.name for s in lk.losses.available("regression")}
    assert all(entry["family"] == "regression" for entry in data)


def test_recommend_json_and_its_python_code_run(tmp_path: Path) -> None:
    targets = tmp_path / "y.pt"
    torch.save(torch.tensor([0, 0, 0, 0, 1, 2]), targets)
    data = _json(
        ["recommend", "--task", "multiclass", "--imbalance", "--targets", str(targets), "--json"]
    )
    assert isinstance(data, list)
    first = data[0]
    assert first["loss"] == "cross_entropy"
    weight = torch.tensor(first["options"]["weight"])
    namespace: dict[str, object] = {}
    exec(first["python"], namespace)
    term = namespace["main"]
    assert isinstance(term, lk.Term)
    torch.testing.assert_close(term.loss.weight, weight, rtol=1e-5, atol=1e-6)
    assert "options = { weight = [" in first["toml"]


def test_recommend_prints_python_that_runs(tmp_path: Path) -> None:
    targets = tmp_path / "y.pt"
    torch.save(torch.tensor([0, 0, 0, 0, 1, 2]), targets)
    result = runner.invoke(
        app,
        ["recommend", "--task", "multiclass", "--imbalance", "--targets", str(targets)],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    code = result.stdout.split("in Python:\n", 1)[1]
    namespace: dict[str, object] = {}
    exec(code, namespace)  # the printed lines, pasted as they are
    term = namespace["main"]
    assert isinstance(term, lk.Term)
    assert term.loss.weight.shape == (3,)
    batch = {"logits": torch.zeros(2, 3)}, {"target": torch.tensor([0, 2])}
    torch.testing.assert_close(term.compute("main", *batch), torch.log(torch.tensor(3.0)))


def test_run_and_report_json(tmp_path: Path, configs: Path) -> None:
    out = tmp_path / "run"
    data = _json(["run", str(configs / "ok.toml"), "--out", str(out), "--json"])
    assert isinstance(data, dict)
    assert data["run_dir"] == str(out)
    assert data["steps"] == 6  # 1438 training images in batches of 256
    assert Path(data["report"]).is_file()
    assert set(data["final"]["val"]) >= {"loss", "loss/cls"}
    report = _json(["report", str(out), "--json"])
    assert report == {"report": str(out / "report.html")}


def test_text_output_fits_80_columns(tmp_path: Path) -> None:
    targets = tmp_path / "y.pt"
    torch.save(torch.tensor([0, 0, 0, 0, 1, 2]), targets)
    for args in (
        ["losses"],
        ["recommend", "--task", "multiclass", "--imbalance", "--targets", str(targets)],
        ["recommend", "--task", "regression", "--outliers"],
    ):
        result = runner.invoke(app, args, env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.output.splitlines()) <= 80, result.output


def test_recommend_balancer_answers_from_the_shipped_measurements() -> None:
    data = _json(["recommend", "--balancer", "--json"])
    assert isinstance(data, list)
    assert [a["scales"] for a in data] == ["similar", "different"]
    for answer in data:
        expected = lk.balancers.advise(answer["scales"])
        assert answer["start_with"] == expected.start_with
        assert answer["start_with"] in answer["first_tier"]
        assert [r["method"] for r in answer["table"]] == [r.method for r in expected.table]
    text = runner.invoke(
        app, ["recommend", "--balancer", "--scales", "similar"], env={"COLUMNS": "80"}
    )
    assert text.exit_code == 0, text.output
    assert f"start with {data[0]['start_with']!r}" in text.output
    assert max(len(line) for line in text.output.splitlines()) <= 80
    wrong = runner.invoke(app, ["recommend", "--balancer", "--scales", "huge"])
    assert wrong.exit_code == 2
    assert "scales must be one of" in wrong.output


def test_bench_reports_progress_on_stderr_and_json_on_stdout(tmp_path: Path) -> None:
    args = ["bench", "mse", "l1", "--shape", "64,4", "--no-memory", "--no-stability"]
    args += ["--min-run-time", "0.01", "--json", "--out", str(tmp_path)]
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [case["name"] for case in data["cases"]] == ["mse", "l1"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("bench: ")]
    assert [line.split(" (")[0] for line in lines] == [
        "bench: 1/2 mse measured",
        "bench: 2/2 l1 measured",
    ]
    assert all("s left)" in line for line in lines)
