"""Bad input exits 2 with a message on stderr; findings exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from losskit.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "{tmp}/missing.toml"], "no such file"),
        (["doctor", "{tmp}/missing.toml"], "no such file"),
        (["doctor", "{configs}/ok.toml", "--batches", "0"], "--batches"),
        (["report", "{tmp}/nowhere"], "nowhere"),
        (["lint", "{tmp}/nowhere"], "nowhere"),
        (["losses", "--family", "nope"], "families are"),
        (["recommend", "--task", "weather"], "weather"),
        (["recommend", "--task", "multiclass", "--targets", "{tmp}/t.txt"], "t.txt"),
        (["run", "{configs}/ok.toml", "--no-such-option"], "No such option"),
        (["bench"], "name the losses"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(
    args: list[str], says: str, tmp_path: Path, configs: Path
) -> None:
    (tmp_path / "t.txt").write_text("1 2 3")
    filled = [a.format(tmp=tmp_path, configs=configs) for a in args]
    result = runner.invoke(app, filled, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert says.lower() in " ".join(result.output.split()).lower()


def test_a_misspelt_section_or_field_gets_a_did_you_mean(tmp_path: Path, configs: Path) -> None:
    text = (configs / "ok.toml").read_text()
    for wrong, hint in (
        (text.replace("[optimizer]", "[optimiser]"), "did you mean 'optimizer'"),
        (text.replace("epochs = 1", "epoch = 1"), "did you mean 'epochs'"),
        (text.replace('source = "digits_mlp"', 'sorce = "digits_mlp"'), "did you mean 'source'"),
        (text.replace('target = "label"', 'targt = "label"'), "did you mean 'target'"),
    ):
        config = tmp_path / "typo.toml"
        config.write_text(wrong)
        result = runner.invoke(app, ["run", str(config), "--quiet"], env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert hint in result.output
