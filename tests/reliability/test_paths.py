"""Paths stay inside: names from a config that become file or folder names are plain names, and
a fresh run deletes only what losskit wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from losskit.config import load_config
from losskit.errors import ConfigError
from losskit.run import run


def _raw(name: Any = "tiny", **run_fields: Any) -> dict[str, Any]:
    return {
        "run": {"name": name, "epochs": 1, **run_fields},
        "model": {"source": "digits_mlp", "input": "pixels", "options": {"hidden": 16}},
        "data": {"source": "digits", "batch_size": 512},
        "terms": {"cls": {"loss": "cross_entropy", "input": "logits", "target": "label"}},
        "optimizer": {"lr": 0.01},
    }


BAD_NAMES = [
    "../../x",
    "..",
    ".",
    "a/b",
    "/tmp/abs",
    "a\\b",
    "C:x",
    "",
    "a\x00b",
    "line\nbreak",
    "tab\there",
    "x" * 300,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_an_unsafe_run_name_is_refused_naming_field_and_value(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_raw(name))
    message = str(caught.value)
    assert "run.name" in message
    assert repr(name)[:40] in message


@pytest.mark.parametrize("name", ["demo", "my-run_1.2", "résumé", "a b", "run=3"])
def test_plain_names_are_accepted(name: str) -> None:
    assert load_config(_raw(name)).run.name == name


def test_a_name_set_after_validation_cannot_escape_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "inner")
    cfg = load_config(_raw())
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"name": "../../escaped"})})
    with pytest.raises(ConfigError, match=r"run\.name"):
        run(cfg, progress=False)
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path.parent / "escaped").exists()


def test_compare_refuses_an_unsafe_base_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from losskit.experiments import compare

    (tmp_path / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "inner")
    cfg = load_config(_raw())
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"name": "../up"})})
    with pytest.raises(ConfigError, match=r"run\.name"):
        compare(cfg, {"optimizer.lr": [0.01]}, seeds=1)
    assert not (tmp_path / "up-compare").exists()


def test_compare_report_refuses_a_manifest_variant_leading_outside(tmp_path: Path) -> None:
    from losskit.experiments import summarize_grid

    manifest = {
        "base": {"trainer": {"monitor": "val/loss", "mode": "min"}, "terms": {}},
        "variants": [{"name": "../../etc", "label": "x"}],
        "seeds": [0],
    }
    (tmp_path / "compare.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"\.\./\.\./etc"):
        summarize_grid(tmp_path)


# -- a fresh run deletes only what losskit wrote ---------------------------------------------------
def test_a_fresh_run_into_a_foreign_folder_deletes_nothing(tmp_path: Path) -> None:
    mine = {
        "notes.txt": "mine",
        "summary.json": '{"mine": true}',
        "best.pt": "not a checkpoint",
        "config.json": '{"mine": true}',
    }
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as caught:
        run(load_config(_raw()), out=tmp_path, progress=False)
    assert str(tmp_path) in str(caught.value)
    for name, text in mine.items():
        assert (tmp_path / name).read_text() == text


def test_a_fresh_run_into_its_own_folder_starts_anew_and_keeps_other_files(tmp_path: Path) -> None:
    run(load_config(_raw()), out=tmp_path, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    os.mkdir(tmp_path / "plots")
    first = (tmp_path / "metrics.jsonl").read_text()
    run(load_config(_raw()), out=tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "plots").is_dir()
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == first.count("\n")
