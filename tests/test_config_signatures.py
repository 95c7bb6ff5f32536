"""A config is the constructors' arguments: every argument a file can hold reaches its constructor.

Each test walks a constructor's signature (Term, Criterion, Trainer, every optimizer and LR
scheduler entry), sets every argument that can be TOML data in a config, builds the run and
checks the constructor received it. The arguments that cannot come from a file are listed:
``losskit.config.SUPPLIED`` (the runner fills them in) and ``NOT_DATA`` below.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import losskit as lk
import losskit.run
from losskit import components
from losskit.config import SUPPLIED, constructor, load_config
from losskit.run import build

#: Arguments that are not data (functions, objects), so no file can give them, by entry.
NOT_DATA: dict[str, dict[str, str]] = {
    "lambdalr": {"lr_lambda": "a function"},
    "multiplicativelr": {"lr_lambda": "a function"},
    "sequentiallr": {"schedulers": "scheduler objects", "milestones": "goes with schedulers"},
    "chainedscheduler": {"schedulers": "scheduler objects"},
    "cycliclr": {"scale_fn": "a function"},
}

#: Values for arguments whose default is None or not TOML data, or that have none.
SAMPLES: dict[str, Any] = {
    "loss": "mse",
    "input": "recon",
    "target": "pixels",
    "mask": "mask",
    "sample_weight": "w",
    "options": {"reduction": "sum"},
    "amp": "bf16",
    "clip_grad_norm": 1.0,
    "patience": 3,
    "device": "cpu",
    "diagnostics_every": 7,
    "metrics": ["accuracy"],
    "foreach": False,
    "fused": False,
    "max_eval": 25,
    "line_search_fn": "strong_wolfe",
    "adjust_lr_fn": "original",
    "T_max": 5,
    "T_0": 5,
    "base_lr": 0.001,
    "max_lr": 0.01,
    "gamma": 0.9,
    "milestones": [2, 4],
    "step_size": 2,
    "step_size_down": 100,
    "total_steps": 100,
    "epochs": 2,
    "steps_per_epoch": 50,
}
#: Values per entry where the name alone does not fix one.
ENTRY_SAMPLES: dict[str, dict[str, Any]] = {"adafactor": {"eps": [1e-30, 1e-3]}}

BASE: dict[str, Any] = {
    "run": {"epochs": 1},
    # Only 2-D parameters, so that every optimizer (Muon too) takes them.
    "model": {"source": "torch.nn:Linear", "options": {"in_features": 64, "out_features": 64}},
    "data": {"source": "digits"},
    "terms": {"cls": {"loss": "cross_entropy", "input": "logits", "target": "label"}},
    "optimizer": {"name": "sgd", "lr": 0.1},
}
BASE["model"]["options"]["bias"] = False


def _is_data(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_data(v) for v in value)
    return isinstance(value, dict) and all(_is_data(v) for v in value.values())


def _settable(
    func: Callable[..., Any], supplied: dict[str, str], entry: str = ""
) -> Iterator[tuple[str, Any]]:
    """Every argument of ``func`` a file can hold, with a value for it."""
    samples = {**SAMPLES, **ENTRY_SAMPLES.get(entry, {})}
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in supplied:
            continue
        if p.name in NOT_DATA.get(entry, {}):
            continue
        if p.name in samples:
            value = samples[p.name]
        elif isinstance(p.default, tuple):
            value = list(p.default)
        else:
            value = p.default
        assert _is_data(value), (
            f"{entry or func.__name__}.{p.name}: no TOML value for it; give one in SAMPLES or "
            "list it in NOT_DATA"
        )
        yield p.name, value


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Every constructor call the runner makes: (section, positional args, keyword args)."""
    seen: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def spy(section: str, name: str | None = None) -> Callable[..., Any]:
        real = constructor(section, name)

        def record(*args: Any, **kwargs: Any) -> Any:
            seen.append((section, args, kwargs))
            return real(*args, **kwargs)

        record.__name__ = getattr(real, "__name__", section)
        return record

    monkeypatch.setattr(losskit.run, "constructor", spy)
    return seen


def _build(raw: dict[str, Any]) -> Any:
    return build(load_config(raw), progress=False)[0]


def _received(
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], section: str
) -> dict[str, Any]:
    found = [kwargs for s, _, kwargs in calls if s == section]
    assert found, f"no {section} was built"
    return found[-1]


def _parameters(section: str, name: str) -> set[str]:
    return set(inspect.signature(constructor(section, name)).parameters)


def test_supplied_and_not_data_name_real_parameters() -> None:
    for section, names in SUPPLIED.items():
        if section in ("optimizer", "scheduler"):
            continue  # checked per entry below
        if section == "logging":  # each a parameter of one sink or more
            taken = {p for n in components.SINKS.names() for p in _parameters("logging", n)}
            assert set(names) <= taken, "SUPPLIED['logging'] names no sink's parameter"
            continue
        params = inspect.signature(constructor(section)).parameters
        assert set(names) <= set(params), f"SUPPLIED[{section!r}] names no parameter"
    for entry, names in NOT_DATA.items():
        params = inspect.signature(components.LR_SCHEDULERS.get(entry)).parameters
        assert set(names) <= set(params)
    for entry in components.OPTIMIZERS.names():
        assert "params" in inspect.signature(components.OPTIMIZERS.get(entry)).parameters
    for entry in components.LR_SCHEDULERS.names():
        assert "optimizer" in inspect.signature(components.LR_SCHEDULERS.get(entry)).parameters


TERM_PARAMETERS = [
    name
    for name, _ in _settable(constructor("terms"), SUPPLIED["terms"])
    if name != "loss"  # the table's declared `loss`, checked below
]


@pytest.mark.parametrize("name", TERM_PARAMETERS)
def test_every_term_argument_is_reachable(name: str, calls: list[Any]) -> None:
    value = dict(_settable(constructor("terms"), SUPPLIED["terms"]))[name]
    probe = {"loss": "mse", "input": "logits", "target": "logits", name: value}
    _build({**BASE, "terms": {**BASE["terms"], "probe": probe}})
    # The table's `loss` is Term's first argument; the others are keywords.
    kwargs = next(c[2] for c in calls if c[0] == "terms" and c[1] == ("mse",))
    assert kwargs[name] == value


def test_every_criterion_argument_is_reachable(calls: list[Any]) -> None:
    arguments = dict(_settable(constructor("criterion"), SUPPLIED["criterion"]))
    arguments.update(balancer="magnitude", nonfinite="warn", check="always")
    trainer = _build({**BASE, **arguments})
    received = _received(calls, "criterion")
    assert set(received) == set(arguments)
    assert isinstance(received.pop("balancer"), lk.balancers.Magnitude)
    assert received == {k: v for k, v in arguments.items() if k != "balancer"}
    assert trainer.criterion.check == "always"  # the example: Criterion(check=...)


def test_every_trainer_argument_is_reachable(calls: list[Any]) -> None:
    arguments = dict(_settable(constructor("trainer"), SUPPLIED["trainer"]))
    arguments.update(min_delta=0.25, accumulate=2, mode="max")
    trainer = _build({**BASE, "trainer": arguments})
    received = _received(calls, "trainer")
    positional = {"model", "criterion", "optimizers"}
    assert set(received) == set(arguments) | (set(SUPPLIED["trainer"]) - positional)
    assert set(received.pop("metrics")) == {"accuracy"}
    assert {k: received[k] for k in arguments if k != "metrics"} == {
        k: v for k, v in arguments.items() if k != "metrics"
    }
    assert trainer.min_delta == 0.25  # the example: Trainer(min_delta=...)


@pytest.mark.parametrize("entry", components.OPTIMIZERS.names())
def test_every_optimizer_argument_is_reachable(entry: str, calls: list[Any]) -> None:
    cls = components.OPTIMIZERS.get(entry)
    arguments = dict(_settable(cls, SUPPLIED["optimizer"], entry))
    trainer = _build({**BASE, "optimizer": {"name": entry, **arguments}})
    assert _received(calls, "optimizer") == arguments
    optimizer = trainer.optimizers["default"]
    assert isinstance(optimizer, cls)
    for name, value in arguments.items():
        if name in optimizer.defaults:
            stored = optimizer.defaults[name]
            assert (list(stored) if isinstance(stored, tuple) else stored) == value, name


#: Schedulers a file cannot build at all: a required argument is not data.
UNBUILDABLE = {"lambdalr", "multiplicativelr", "sequentiallr", "chainedscheduler"}
SCHEDULERS = [e for e in components.LR_SCHEDULERS.names() if e not in UNBUILDABLE]


@pytest.mark.parametrize("entry", SCHEDULERS)
def test_every_scheduler_argument_is_reachable(entry: str, calls: list[Any]) -> None:
    cls = components.LR_SCHEDULERS.get(entry)
    arguments = dict(_settable(cls, SUPPLIED["scheduler"], entry))
    # CyclicLR and OneCycleLR cycle the momentum: an optimizer with betas.
    optimizer = {"name": "adam", "lr": 0.001} if "cycl" in entry else BASE["optimizer"]
    trainer = _build({**BASE, "optimizer": optimizer, "scheduler": {"name": entry, **arguments}})
    assert _received(calls, "scheduler") == arguments
    assert isinstance(trainer.schedulers["default"], cls)


def test_schedulers_that_need_objects_are_the_listed_ones() -> None:
    unbuildable = {
        entry
        for entry in components.LR_SCHEDULERS.names()
        if any(
            p.default is p.empty and p.name in NOT_DATA.get(entry, {})
            for p in inspect.signature(components.LR_SCHEDULERS.get(entry)).parameters.values()
        )
    }
    assert unbuildable == UNBUILDABLE


def test_a_field_for_the_runner_is_refused_with_where_it_comes_from() -> None:
    with pytest.raises(lk.ConfigError, match="'forward' is not set here: it comes from the input"):
        load_config({**BASE, "trainer": {"forward": "x"}})
    table = {"name": "sgd", "lr": 0.1, "options": {"params": 1}}
    with pytest.raises(lk.ConfigError, match="optimizer: field 'params' is not set here"):
        load_config({**BASE, "optimizer": table})
