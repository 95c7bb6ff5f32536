"""Bad inputs name the term: exceptions from selectors and losses, non-finite policies from the
first call, and bad weights, sample weights and loss options refused with the key or option."""

from __future__ import annotations

import errno
import math
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import losskit as lk
from losskit import losses, schedules

X = torch.zeros(4)
Y = torch.ones(4)


def _raise(exc: BaseException) -> Callable[..., Any]:
    def fn(*args: Any) -> Any:
        raise exc

    return fn


def _raise_not(value: Any) -> Callable[..., Any]:
    """A loss that returns ``value`` (not a tensor)."""
    return lambda *args: value


class RawMSELoss(nn.MSELoss):
    """torch's MSELoss under another class: no contract is looked up for it."""


class OddError(Exception):
    """A user exception whose constructor takes two required arguments."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def _once(term: lk.Term, outputs: Any = None, batch: Any = None, **options: Any) -> Any:
    crit = lk.Criterion({"myhead": term}, **options)
    return crit({"p": X} if outputs is None else outputs, {"y": Y} if batch is None else batch)


# -- item 10: any exception inside a term names the key and the role -------------------------


def test_selector_key_error_names_key_and_role() -> None:
    term = lk.Term("mse", input=lambda out, batch: out["nope"], target="y")
    with pytest.raises(KeyError) as info:
        _once(term)
    message = str(info.value)
    assert message.startswith("term 'myhead': KeyError while selecting input")
    assert "'nope'" in message
    assert isinstance(info.value, lk.TermError)
    assert isinstance(info.value.__cause__, KeyError)
    assert type(info.value.__cause__) is KeyError


# (id, term, expected type, words in the message)
_RAISING: list[tuple[str, Callable[[], lk.Term], type[BaseException], tuple[str, ...]]] = [
    (
        "input-keyerror",
        lambda: lk.Term("mse", input=lambda o, b: o["nope"], target="y"),
        KeyError,
        ("selecting input", "'nope'"),
    ),
    (
        "target-keyerror",
        lambda: lk.Term("mse", input="p", target=lambda o, b: b["nope"]),
        KeyError,
        ("selecting target",),
    ),
    (
        "mask-indexerror",
        lambda: lk.Term("mse", input="p", target="y", mask=_raise(IndexError("idx"))),
        IndexError,
        ("selecting mask", "idx"),
    ),
    (
        "sample-weight-attributeerror",
        lambda: lk.Term("mse", input="p", target="y", sample_weight=_raise(AttributeError("w"))),
        AttributeError,
        ("selecting sample_weight",),
    ),
    (
        "second-input-zerodivision",
        lambda: lk.Term(
            "cosine_embedding", input=("p", _raise(ZeroDivisionError("zero"))), target="y"
        ),
        ZeroDivisionError,
        ("selecting input[1]", "zero"),
    ),
    (
        "plain-module-runtimeerror",
        # a subclass of a torch.nn loss: not checked against the contract, torch raises
        lambda: lk.Term(RawMSELoss(), input="p", target=lambda o, b: torch.zeros(5)),
        RuntimeError,
        ("calling the loss", "MSELoss", "input (4,)", "target (5,)"),
    ),
    (
        "lambda-term-typeerror",
        lambda: lk.Term(lambda outputs, batch: outputs + batch),
        TypeError,
        ("calling the loss",),
    ),
    (
        "loss-oserror",
        lambda: lk.Term(_raise(OSError(errno.ENOENT, "gone", "f.txt")), input="p", target="y"),
        OSError,
        ("calling the loss", "gone"),
    ),
    (
        "loss-odd-constructor",
        lambda: lk.Term(_raise(OddError(7, "odd")), input="p", target="y"),
        OddError,
        ("calling the loss", "7: odd"),
    ),
    (
        "loss-unicode-fallback",
        lambda: lk.Term(
            _raise(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")), input="p", target="y"
        ),
        lk.LossInputError,
        ("calling the loss", "UnicodeDecodeError"),
    ),
    (
        "optional-present-keyerror",
        lambda: lk.Term("mse", input=lambda o, b: o["nope"], target="y", optional=True),
        KeyError,
        ("selecting input",),
    ),
    (
        "monitor-valueerror",
        lambda: lk.Term(_raise(ValueError("monitored")), input="p", target="y", monitor=True),
        ValueError,
        ("calling the loss", "monitored"),
    ),
]


@pytest.mark.parametrize(
    ("term", "expected", "words"),
    [pytest.param(t, e, w, id=i) for i, t, e, w in _RAISING],
)
def test_exception_inside_a_term_is_keyed(
    term: Callable[[], lk.Term], expected: type[BaseException], words: tuple[str, ...]
) -> None:
    built = term()
    terms = {"myhead": built}
    if built.monitor:
        terms = {"fit": lk.Term("mse", input="p", target="y"), "myhead": built}
    crit = lk.Criterion(terms)
    with pytest.raises(expected) as info:
        crit({"p": X}, {"y": Y})
    message = str(info.value)
    assert message.startswith("term 'myhead': "), message
    for word in words:
        assert word in message, (word, message)
    assert info.value.__cause__ is not None
    assert getattr(info.value, "key", None) == "myhead"


def test_keyed_exception_keeps_attributes_and_pickles() -> None:
    term = lk.Term(_raise(OSError(errno.ENOENT, "gone", "f.txt")), input="p", target="y")
    with pytest.raises(FileNotFoundError, match=r"^term 'myhead': FileNotFoundError while") as info:
        _once(term)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == "f.txt"
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, FileNotFoundError)
    assert str(again) == str(info.value)
    odd = lk.Term(_raise(OddError(7, "odd")), input="p", target="y")
    with pytest.raises(OddError) as caught:
        _once(odd)
    assert caught.value.code == 7
    with pytest.raises(OddError) as second:
        _once(lk.Term(_raise(OddError(8, "odd")), input="p", target="y"))
    assert type(second.value) is type(caught.value)


# -- item 13: nonfinite="warn" / "skip" from the first call ----------------------------------


def test_nonfinite_warn_is_honoured_from_the_first_call() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="p", target="y")}, nonfinite="warn")
    bad = torch.tensor([math.nan, 1.0, 1.0, 1.0])
    for _ in range(5):
        with pytest.warns(lk.LossKitWarning, match="'reg'"):
            res = crit({"p": bad}, {"y": Y})
        assert math.isnan(float(res["reg"]))


@dataclass(frozen=True)
class _NonFinite:
    loss: str
    policy: str
    input: torch.Tensor
    target: torch.Tensor


_NONFINITE = {
    "mse-warn-nan-input": _NonFinite("mse", "warn", torch.tensor([math.nan, 0.0]), torch.zeros(2)),
    "mse-skip-inf-target": _NonFinite("mse", "skip", torch.zeros(2), torch.tensor([0.0, math.inf])),
    "ce-skip-nan-logits": _NonFinite(
        "cross_entropy", "skip", torch.tensor([[math.nan, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    ),
    "nll-warn-nan-log-probabilities": _NonFinite(
        "nll", "warn", torch.tensor([[math.nan, -1.0], [-1.0, -0.5]]), torch.tensor([0, 1])
    ),
    "bce-logits-warn-inf-target": _NonFinite(
        "bce_logits", "warn", torch.zeros(2), torch.tensor([math.inf, 1.0])
    ),
    "kl-warn-inf-input": _NonFinite(
        "kl_div", "warn", torch.tensor([[-math.inf, 0.0]]), torch.tensor([[0.0, 1.0]])
    ),
}


@pytest.mark.parametrize("case", list(_NONFINITE.values()), ids=list(_NONFINITE))
def test_nonfinite_policy_from_the_first_call(case: _NonFinite) -> None:
    crit = lk.Criterion(
        {
            "ok": lk.Term("l1", input="q", target="z"),
            "bad": lk.Term(case.loss, input="p", target="y"),
        },
        nonfinite=case.policy,  # type: ignore[arg-type]
    )
    outputs, batch = {"p": case.input, "q": X}, {"y": case.target, "z": Y}
    for _ in range(4):
        with pytest.warns(lk.LossKitWarning, match="'bad'"):
            res = crit(outputs, batch)
        if case.policy == "skip":
            assert float(res.weights["bad"]) == 0.0
            assert math.isfinite(float(res.total))


def test_nonfinite_raise_keeps_raising_with_the_key() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="p", target="y")})
    with pytest.raises(lk.LossInputError, match=r"term 'reg'.*input has 1 NaN"):
        crit({"p": torch.tensor([math.nan, 1.0])}, {"y": torch.ones(2)})


def test_nonfinite_policy_change_reaches_the_contracts() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="p", target="y")}, nonfinite="warn")
    crit.nonfinite = "raise"
    with pytest.raises(lk.LossInputError, match=r"term 'reg'.*NaN"):
        crit({"p": torch.tensor([math.nan, 1.0])}, {"y": torch.ones(2)})


# -- item 15: bad weights, sample weights, options and return values -------------------------


def test_bad_weight_and_option_are_refused() -> None:
    with pytest.raises(lk.ConfigError, match=r"weight.*-1"):
        lk.Term("mse", weight=-1.0)
    with pytest.raises(lk.ConfigError, match=r"HuberLoss \('huber'\): delta"):
        lk.Term("huber", delta=-1)
    crit = lk.Criterion({"w": lk.Term("mse", weight=lambda step: 1.0 - step / 2)})
    crit.step()
    crit.step()
    with pytest.raises(lk.ConfigError, match=r"term 'w'.*step 3"):
        crit.step()


def _criterion(term: lk.Term) -> Callable[[], Any]:
    return lambda: lk.Criterion({"myhead": term})


def _stepped(schedule: Callable[[int], float], steps: int) -> Callable[[], Any]:
    def run() -> None:
        crit = lk.Criterion({"myhead": lk.Term("mse", weight=schedule)})  # type: ignore[arg-type]
        for _ in range(steps):
            crit.step()

    return run


def _called(term: Callable[[], lk.Term], outputs: Any, batch: Any) -> Callable[[], Any]:
    return lambda: lk.Criterion({"myhead": term()})(outputs, batch)


_W = {"p": torch.zeros(3)}
_B = {"y": torch.ones(3), "w": torch.tensor([1.0, -0.5, 1.0])}

_REFUSED: dict[str, tuple[Callable[[], Any], type[BaseException], tuple[str, ...]]] = {
    "weight-negative": (lambda: lk.Term("mse", weight=-1.0), lk.ConfigError, ("weight", "-1")),
    "weight-nan": (lambda: lk.Term("mse", weight=math.nan), lk.ConfigError, ("weight", "nan")),
    "weight-inf": (lambda: lk.Term("mse", weight=math.inf), lk.ConfigError, ("weight", "inf")),
    "constant-negative": (
        lambda: lk.Criterion({"myhead": lk.Term("mse", weight=schedules.Constant(-2.0))}),
        lk.ConfigError,
        ("term 'myhead'", "step 0", "-2"),
    ),
    "schedule-nan-at-start": (
        _stepped(lambda step: math.nan, 0),
        lk.ConfigError,
        ("term 'myhead'", "step 0", "nan"),
    ),
    "schedule-negative-later": (
        _stepped(lambda step: 1.0 - step, 2),
        lk.ConfigError,
        ("term 'myhead'", "step 2", "-1"),
    ),
    "sample-weight-negative": (
        _called(lambda: lk.Term("mse", input="p", target="y", sample_weight="w"), _W, _B),
        lk.LossInputError,
        ("term 'myhead'", "sample_weight", "-0.5"),
    ),
    "huber-delta": (lambda: losses.get("huber", delta=-1), lk.ConfigError, ("huber", "delta")),
    "huber-delta-term": (lambda: lk.Term("huber", delta=0.0), lk.ConfigError, ("huber", "delta")),
    "ce-label-smoothing": (
        lambda: lk.Term("cross_entropy", label_smoothing=1.5),
        lk.ConfigError,
        ("cross_entropy", "label_smoothing", "1.5"),
    ),
    "smooth-l1-beta": (
        lambda: losses.get("smooth_l1", beta=-0.1),
        lk.ConfigError,
        ("smooth_l1", "beta"),
    ),
    "mse-reduction": (
        lambda: losses.get("mse", reduction="avg"),
        lk.ConfigError,
        ("mse", "reduction", "'avg'"),
    ),
    "triplet-margin": (
        lambda: losses.get("triplet_margin", margin=-1.0),
        lk.ConfigError,
        ("triplet_margin", "margin"),
    ),
    "multi-margin-p": (
        lambda: losses.get("multi_margin", p=3),
        lk.ConfigError,
        ("multi_margin", "p"),
    ),
    "cosine-embedding-margin": (
        lambda: losses.get("cosine_embedding", margin=2.0),
        lk.ConfigError,
        ("cosine_embedding", "margin"),
    ),
    "gaussian-nll-eps": (
        lambda: losses.get("gaussian_nll", eps=-1.0),
        lk.ConfigError,
        ("gaussian_nll", "eps"),
    ),
    "focal-gamma": (
        lambda: losses.get("focal", gamma=-1.0),
        lk.ConfigError,
        ("FocalLoss", "gamma"),
    ),
    "option-not-a-number": (
        lambda: losses.get("huber", delta="wide"),
        lk.ConfigError,
        ("huber", "delta", "'wide'"),
    ),
    "returns-int-tensor": (
        _called(lambda: lk.Term(lambda o, b: (o == b).sum()), X, Y),
        lk.LossInputError,
        ("term 'myhead'", "int64", "floating-point"),
    ),
    "returns-bool-tensor": (
        _called(lambda: lk.Term(lambda o, b: (o == b).all()), X, Y),
        lk.LossInputError,
        ("term 'myhead'", "bool"),
    ),
    "returns-python-float": (
        _called(lambda: lk.Term(_raise_not(1.0)), X, Y),
        lk.LossInputError,
        ("term 'myhead'", "float", "expected a tensor"),
    ),
    "returns-int-per-element": (
        _called(
            lambda: lk.Term(_IntPerElement(), input="p", target="y", sample_weight="v"),
            _W,
            {"y": torch.ones(3), "v": torch.ones(3)},
        ),
        lk.LossInputError,
        ("term 'myhead'", "int64"),
    ),
}


class _IntPerElement(nn.Module):
    reduction = "none"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x == y).long()


@pytest.mark.parametrize(
    ("build", "expected", "words"), list(_REFUSED.values()), ids=list(_REFUSED)
)
def test_bad_value_is_refused_naming_it(
    build: Callable[[], Any], expected: type[BaseException], words: tuple[str, ...]
) -> None:
    with pytest.raises(expected) as info:
        build()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_negative_sample_weight_checked_on_first_calls_only() -> None:
    crit = lk.Criterion({"myhead": lk.Term("mse", input="p", target="y", sample_weight="w")})
    good = {"y": torch.ones(3), "w": torch.ones(3)}
    for _ in range(3):
        crit(_W, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crit(_W, _B)  # settled: no host sync, no check
