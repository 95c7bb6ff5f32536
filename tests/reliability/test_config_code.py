"""Configurations are code, and say so: what they import is named first, a factory that returns
the wrong kind of object is named by its field, and modules beside the config import as under
``python -m``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losskit.cli import app
from losskit.config import load_config
from losskit.errors import ConfigError
from losskit.run import build

CONFIG = """
[run]
name = "code"
epochs = 1

[model]
source = "{model}"
input = "pixels"

[data]
source = "{data}"
batch_size = 64

[terms.cls]
loss = "cross_entropy"
input = "logits"
target = "label"

[optimizer]
name = "sgd"
lr = 0.1
"""

MODULE = """
from losskit.demo import DigitsNet, digits_data

def net():
    return DigitsNet(hidden=16, bottleneck=4)

def not_a_module():
    return {"weights": [1, 2]}

def one_dataset():
    return digits_data()[0]

def not_datasets():
    return (1, 2)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the user's module, the working directory, not on sys.path."""
    name = f"user_code_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path / name


def _config(project: Path, model: str = "net", data: str = "digits") -> Path:
    module = project.name
    data_source = data if data == "digits" else f"{module}:{data}"
    path = project.parent / "run.toml"
    path.write_text(CONFIG.format(model=f"{module}:{model}", data=data_source))
    return path


def test_a_module_in_the_working_directory_imports_without_pythonpath(project: Path) -> None:
    trainer, train, _ = build(load_config(_config(project)), progress=False)
    assert type(trainer.model).__name__ == "DigitsNet"
    assert len(train) > 0


def test_the_code_a_configuration_runs_is_listed_by_field(project: Path) -> None:
    cfg = load_config(_config(project, data="one_dataset"))
    assert cfg.code == {
        "model.source": f"{project.name}:net",
        "data.source": f"{project.name}:one_dataset",
    }


@pytest.mark.parametrize(
    ("model", "data", "match"),
    [
        (
            "not_a_module",
            "digits",
            r"model\.source .*returned a dict, expected a torch\.nn\.Module",
        ),
        ("net", "one_dataset", r"data\.source .*expected a \(train, validation\) pair"),
        ("net", "not_datasets", r"data\.source .*train set of type int, expected a dataset"),
    ],
)
def test_a_factory_of_the_wrong_kind_is_named_by_its_field(
    project: Path, model: str, data: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build(load_config(_config(project, model=model, data=data)), progress=False)


def test_doctor_and_run_say_which_modules_they_import_before_running(project: Path) -> None:
    config = _config(project, model="not_a_module")
    for command in ("doctor", "run"):
        result = CliRunner().invoke(app, [command, str(config)])
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())  # rich wraps at the terminal's width
        assert f"imports and runs: {project.name} (model.source)" in said
        assert "only you trust" in said
        assert said.index("imports and runs") < said.index("returned a dict")
