"""The loss doctor: planted faults are reported under the right key, a healthy model is clean."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor, nn

import losskit as lk
from losskit.diagnostics import Diagnosis, Finding


class Net(nn.Module):
    """A shared trunk and three heads (``aux`` is trained only when a term reads it)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 16)
        self.cls = nn.Linear(16, 4)
        self.reg = nn.Linear(16, 1)
        self.aux = nn.Linear(16, 2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = torch.tanh(self.trunk(x))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "aux": self.aux(h)}


def _batch(seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(32, 6, generator=g),
        "label": torch.randint(0, 4, (32,), generator=g),
        "y": torch.randn(32, generator=g),
        "pair": torch.randn(32, 2, generator=g),
    }


def _terms(**changes: lk.Term | None) -> dict[str, lk.Term]:
    terms: dict[str, lk.Term | None] = {
        "cls": lk.Term("cross_entropy", input="logits", target="label"),
        "reg": lk.Term("mse", input="value", target="y", weight=0.5),
        "aux": lk.Term("mse", input="aux", target="pair", weight=0.2),
    }
    terms.update(changes)
    return {k: t for k, t in terms.items() if t is not None}


def _diagnose(model: Net, **changes: lk.Term | None) -> Diagnosis:
    crit = lk.Criterion(_terms(**changes))
    return lk.diagnostics.diagnose(model, crit, _batch(), forward=lambda m, b: m(b["x"]))


def _model() -> Net:
    torch.manual_seed(0)
    return Net()


def _only(report: Diagnosis, kind: str) -> Finding:
    assert [f.kind for f in report.findings] == [kind], report.findings
    return report.findings[0]


def test_a_healthy_model_has_no_findings() -> None:
    report = _diagnose(_model())
    assert report.findings == ()
    assert report.ok
    assert set(report.shared) == {"trunk.weight", "trunk.bias"}
    assert report.untrained == ()


def test_values_shares_and_gradient_norms_match_a_hand_computation() -> None:
    model, batch = _model(), _batch()
    report = _diagnose(model)
    out = model(batch["x"])
    parts = {
        "cls": (1.0, F.cross_entropy(out["logits"], batch["label"])),
        "reg": (0.5, F.mse_loss(out["value"], batch["y"])),
        "aux": (0.2, F.mse_loss(out["aux"], batch["pair"])),
    }
    total = sum(w * v.item() for w, v in parts.values())
    for key, (weight, value) in parts.items():
        term = report.terms[key]
        torch.testing.assert_close(term.value, value.item())
        torch.testing.assert_close(term.weight, weight)
        torch.testing.assert_close(term.share, weight * value.item() / total)
        trunk = torch.autograd.grad(
            weight * value, list(model.trunk.parameters()), retain_graph=True
        )
        head = getattr(model, key)
        own = torch.autograd.grad(weight * value, list(head.parameters()), retain_graph=True)
        expected = {
            "trunk": torch.cat([g.flatten() for g in trunk]).norm().item(),
            key: torch.cat([g.flatten() for g in own]).norm().item(),
        }
        assert term.grad_norms.keys() == expected.keys()
        for group, norm in expected.items():
            torch.testing.assert_close(term.grad_norms[group], norm, rtol=1e-5, atol=1e-8)
        assert term.reaches == ("trunk.weight", "trunk.bias", f"{key}.weight", f"{key}.bias")
    trunk_grads = {
        k: torch.cat(
            [
                g.flatten()
                for g in torch.autograd.grad(v, list(model.trunk.parameters()), retain_graph=True)
            ]
        )
        for k, (_, v) in parts.items()
    }
    for (a, b), cos in report.conflicts.items():
        expected_cos = F.cosine_similarity(trunk_grads[a], trunk_grads[b], dim=0).item()
        torch.testing.assert_close(cos, expected_cos, rtol=1e-4, atol=1e-6)
    assert list(report.conflicts) == [("cls", "reg"), ("cls", "aux"), ("reg", "aux")]


def test_a_head_no_loss_trains_is_reported_with_its_parameters() -> None:
    report = _diagnose(_model(), aux=None)
    finding = _only(report, "untrained_parameters")
    assert finding.key is None
    assert finding.severity == "warning"
    assert finding.parameters == ("aux.weight", "aux.bias")
    assert "'aux'" in finding.message
    assert "add a term" in finding.message
    assert report.untrained == ("aux.weight", "aux.bias")
    assert report.ok


def test_class_indices_stored_as_floats() -> None:
    report = _diagnose(
        _model(),
        cls=lk.Term("cross_entropy", input="logits", target=lambda o, b: b["label"].float()),
    )
    finding = _only(report, "integer_coded_target")
    assert (finding.key, finding.severity) == ("cls", "error")
    assert "target.long()" in finding.message
    assert "4 whole values in [0, 3]" in finding.message
    assert not report.ok
    assert report.terms["cls"].value is None  # the term cannot be computed
    assert report.terms["reg"].share is not None


def test_class_labels_regressed_on_as_floats_are_a_warning() -> None:
    report = _diagnose(
        _model(), reg=lk.Term("mse", input="value", target=lambda o, b: b["label"].float())
    )
    finding = _only(report, "integer_coded_target")
    assert (finding.key, finding.severity) == ("reg", "warning")
    assert "cross_entropy" in finding.message
    assert "target.long()" in finding.message


@pytest.mark.parametrize(
    ("term", "drop"),
    [
        (
            lk.Term("cross_entropy", input=lambda o, b: o["logits"].softmax(1), target="label"),
            "softmax",
        ),
        (
            lk.Term(
                "binary_cross_entropy_with_logits",
                input=lambda o, b: o["logits"].sigmoid(),
                target=lambda o, b: F.one_hot(b["label"], 4).float(),
            ),
            "sigmoid",
        ),
    ],
)
def test_probabilities_fed_where_logits_are_expected(term: lk.Term, drop: str) -> None:
    report = _diagnose(_model(), cls=term)
    finding = _only(report, "probabilities_as_logits")
    assert (finding.key, finding.severity) == ("cls", "error")
    assert "drop the" in finding.message
    assert drop in finding.message


def test_a_term_a_thousand_times_larger_dominates() -> None:
    report = _diagnose(
        _model(), reg=lk.Term("mse", input="value", target=lambda o, b: 1000 * b["y"])
    )
    finding = _only(report, "dominates")
    assert (finding.key, finding.other) == ("reg", "cls")
    terms = report.terms
    contributions = {k: t.weight * t.value for k, t in terms.items()}  # type: ignore[operator]
    ratio = contributions["reg"] / contributions["cls"]
    assert ratio > 1e5
    assert f"weighted value is {ratio:.3g}x that of 'cls'" in finding.message
    assert "balancer='magnitude'" in finding.message
    assert terms["reg"].share == pytest.approx(contributions["reg"] / sum(contributions.values()))


def test_a_term_whose_gradient_is_a_thousand_times_larger_dominates() -> None:
    # Its value is ordinary (1.0); its gradient is scaled by 1e4.
    steep = lk.Term(lambda o, b: 1.0 + 1e4 * (o["value"] - o["value"].detach()).mean())
    report = _diagnose(_model(), reg=steep)
    finding = _only(report, "dominates")
    trunk = {k: t.grad_norms["trunk"] for k, t in report.terms.items()}
    runner = max((k for k in trunk if k != "reg"), key=trunk.__getitem__)
    ratio = trunk["reg"] / trunk[runner]
    assert (finding.key, finding.other) == ("reg", runner)
    assert (
        f"gradient on the shared parameters is {ratio:.3g}x that of {runner!r}" in finding.message
    )
    assert "weighted value" not in finding.message


def test_opposed_gradients_conflict() -> None:
    model = _model()
    push = lk.Term(lambda o, b: (o["value"] * b["y"]).mean())
    pull = lk.Term(lambda o, b: -2.0 * (o["value"] * b["y"]).mean())
    report = _diagnose(model, reg=None, push=push, pull=pull)
    finding = _only(report, "conflict")
    assert (finding.key, finding.other) == ("push", "pull")
    assert "upgrad" in finding.message
    assert set(report.shared) == {"trunk.weight", "trunk.bias", "reg.weight", "reg.bias"}
    torch.testing.assert_close(report.conflicts[("push", "pull")], -1.0)


def test_nan_in_one_head_is_an_error_under_that_key_only() -> None:
    model = _model()
    with torch.no_grad():
        model.reg.weight[0, 0] = math.nan
    report = _diagnose(model)
    finding = _only(report, "nonfinite")
    assert (finding.key, finding.severity) == ("reg", "error")
    assert "input ((32,) float32 32 non-finite)" in finding.message
    assert not report.ok
    assert not report.terms["reg"].finite
    assert report.terms["reg"].inputs["input"].nonfinite == 32
    assert report.for_key("cls") == []
    assert report.for_key("aux") == []
    # The healthy keys share the total between them.
    torch.testing.assert_close(report.terms["cls"].share + report.terms["aux"].share, 1.0)
    json.dumps(report.to_dict(), allow_nan=False)


def test_a_term_that_does_not_reach_the_model() -> None:
    report = _diagnose(
        _model(), aux=lk.Term("mse", input=lambda o, b: o["aux"].detach(), target="pair")
    )
    kinds = sorted((f.kind, f.key) for f in report.findings)
    assert kinds == [("untrained_parameters", None), ("zero_gradient", "aux")]
    assert "detached" in report.for_key("aux")[0].message


def test_a_broken_shape_contract_is_reported_not_raised() -> None:
    report = _diagnose(
        _model(), reg=lk.Term("mse", input=lambda o, b: o["value"][:, None], target="y")
    )
    finding = _only(report, "contract")
    assert finding.key == "reg"
    assert "squeeze" in finding.message


def test_a_missing_key_is_a_selection_error() -> None:
    report = _diagnose(_model(), reg=lk.Term("mse", input="values", target="y"))
    selection, untrained = report.findings
    assert (selection.kind, selection.key, selection.severity) == ("selection", "reg", "error")
    assert "'values' not found" in selection.message
    # Nothing reads the reg head's output, so nothing trains it either.
    assert (untrained.kind, untrained.parameters) == (
        "untrained_parameters",
        ("reg.weight", "reg.bias"),
    )


def test_the_report_prints_as_tables_and_serialises() -> None:
    model = _model()
    with torch.no_grad():
        model.reg.weight[0, 0] = math.nan
    report = _diagnose(model, aux=None)
    console = Console(record=True, width=160)
    console.print(report)
    text = console.export_text()
    for needle in (
        "what each term reads",
        "grad trunk",
        "nonfinite",
        "untrained_parameters",
        "reg",
    ):
        assert needle in text
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["ok"] is False
    assert data["terms"]["reg"]["value"] is None  # NaN becomes null
    assert [f["kind"] for f in data["findings"]] == ["nonfinite", "untrained_parameters"]


def test_the_model_is_left_as_it_was() -> None:
    model = _model()
    before: dict[str, Any] = {n: p.detach().clone() for n, p in model.named_parameters()}
    _diagnose(model)
    assert all(p.grad is None for p in model.parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, before[name])
