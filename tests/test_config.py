"""Run configurations: validation errors name the file, the field and what is allowed."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch

import losskit as lk
from losskit.config import load_config, make_weight
from losskit.run import build, run

DEMO = resources.files("losskit").joinpath("demo.toml")

MINIMAL = """
[run]
epochs = 1
[model]
source = "digits_mlp"
input = "pixels"
[data]
source = "digits"
batch_size = 128
[terms.cls]
loss = "cross_entropy"
input = "logits"
target = "label"
[optimizer]
name = "adam"
lr = 0.01
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_the_shipped_demo_config_is_valid() -> None:
    cfg = load_config(Path(str(DEMO)))
    assert list(cfg.terms) == ["cls", "recon", "ink"]
    assert isinstance(make_weight(cfg.terms["recon"].weight), lk.schedules.LinearWarmup)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('loss = "cross_entropy"', 'loss = "cross_entropi"'), "did you mean 'cross_entropy'"),
        (("[run]", "[run]\ncolour = 1"), "run.colour: unknown field"),
        (("epochs = 1", "epochs = 0"), "run.epochs: Input should be greater than or equal to 1"),
        (
            ("[optimizer]", '[trainer]\namp = "fp8"\n[optimizer]'),
            "trainer.amp: Input should be 'bf16' or 'fp16'",
        ),
        (
            ('target = "label"', 'target = "label"\nweight = { schedule = "warm", steps = 3 }'),
            "a weight table needs schedule = one of ['constant', 'cosine', 'cyclical',",
        ),
        (
            ('target = "label"', 'target = "label"\nweight = { schedule = "cosine", stop = 3 }'),
            "schedule 'cosine': unknown argument 'stop'; did you mean 'steps'? allowed: start, "
            "end, steps",
        ),
        (
            ('[optimizer]\nname = "adam"\nlr = 0.01', ""),
            "give exactly one of [optimizer] or [optimizers.NAME]",
        ),
        (("[model]", "[model]\n[model.extra]"), "model.extra: unknown field"),
        (
            ("[optimizer]", "[trainer]\nmin_delt = 0.1\n[optimizer]"),
            "trainer: unknown field 'min_delt'; did you mean 'min_delta'? allowed: accumulate,",
        ),
        (("[run]", 'chek = "always"\n[run]'), "unknown field 'chek'; did you mean 'check'?"),
        (("[run]", 'check = "sometimes"\n[run]'), "check: Input should be 'first', 'always' or"),
        (('target = "label"', 'target = "label"\nwieght = 2'), "did you mean 'weight'?"),
        (('name = "adam"', 'name = "adam"\nbetas = [0.9, 0.99]\nbetta = 1'), "'betas'?"),
        (
            ('name = "adam"', 'name = "adamx"'),
            "unknown optimizer 'adamx'; did you mean 'adamax' or 'adam'",
        ),
        (("[optimizer]", "[trainer]\nrun_dir = 'x'\n[optimizer]"), "comes from the out of [run]"),
        (
            ('loss = "cross_entropy"', 'loss = "bce_with_logits"\nsmooth_factor = 0.1'),
            "'smooth_factor' is another library's name for an option: here, smp's "
            "smooth_factor=f (target t (1 - 2f) + f) is label_smoothing=2*f",
        ),
    ],
)
def test_invalid_configs_name_file_and_field(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    path = _write(tmp_path, MINIMAL.replace(*edit, 1))
    with pytest.raises(lk.ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(lk.ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[run\n"))
    with pytest.raises(lk.ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_unknown_sources_and_optimizers_are_explained(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, MINIMAL.replace('source = "digits_mlp"', 'source = "resnet"'))
    )
    with pytest.raises(
        lk.ConfigError,
        match=r"model.source: unknown model 'resnet' \(known: digits_mlp, multidigits_mlp\), or",
    ):
        build(cfg)
    cfg = load_config(_write(tmp_path, MINIMAL.replace("lr = 0.01", "lr = -1")))
    with pytest.raises(lk.ConfigError, match=r"optimizer: Adam: Invalid learning rate: -1"):
        build(cfg)
    cfg = load_config(
        _write(tmp_path, MINIMAL.replace('source = "digits_mlp"', 'source = "nowhere.mod:f"'))
    )
    with pytest.raises(lk.ConfigError, match=r"cannot import 'nowhere\.mod'"):
        build(cfg)


def test_several_optimizers_need_keys_that_exist(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '[optimizer]\nname = "adam"\nlr = 0.01', '[optimizers.a]\nkeys = ["nope"]'
    )
    with pytest.raises(lk.ConfigError, match=r"optimizers.a.keys names \['nope'\], not terms"):
        load_config(_write(tmp_path, text))


def test_a_user_model_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def make(width=8):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(),"
        " torch.nn.Linear(width, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = MINIMAL.replace(
        'source = "digits_mlp"', 'source = "mymodels:make"\noptions = { width = 16 }'
    )
    text = text.replace('input = "logits"', "")
    result = run(load_config(_write(tmp_path, text)), out=tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["epochs"] == 1
    assert torch.isfinite(torch.tensor(summary["final"]["val"]["loss/cls"]))


def test_learned_loss_weights_train_with_the_model(tmp_path: Path) -> None:
    text = 'balancer = "uncertainty"\n' + MINIMAL
    text = text.replace(
        "[optimizer]",
        '[terms.ink]\nloss = "huber"\ninput = "logits"\ntarget = "logits"\n[optimizer]',
    )
    trainer, _, _ = build(load_config(_write(tmp_path, text)))
    optimized = {id(p) for g in trainer.optimizers["default"].param_groups for p in g["params"]}
    learned = list(trainer.criterion.parameters())
    assert learned
    assert all(id(p) in optimized for p in learned)
