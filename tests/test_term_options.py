"""A loss's own options have one home, ``options=``, mirroring the TOML's ``options = {...}``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit as lk
from losskit.recommend import recommend


def _batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return {"logits": torch.randn(6, 3, generator=g)}, {"label": torch.tensor([0, 1, 2, 2, 1, 0])}


def test_class_weights_in_options_weight_the_classes_not_the_term() -> None:
    out, batch = _batch()
    w = torch.tensor([0.2, 1.0, 3.0])
    term = lk.Term(
        "cross_entropy", input="logits", target="label", weight=0.5, options={"weight": w}
    )
    crit = lk.Criterion({"cls": term})
    res = crit(out, batch)
    expected = F.cross_entropy(out["logits"], batch["label"], weight=w)
    torch.testing.assert_close(res["cls"], expected)
    torch.testing.assert_close(res.total, 0.5 * expected)


def test_keyword_options_still_work_and_join_options() -> None:
    out, batch = _batch()
    both = lk.Term("softmax_focal", input="logits", target="label", gamma=2.0, options={})
    kw = lk.Term("softmax_focal", input="logits", target="label", gamma=2.0)
    opt = lk.Term("softmax_focal", input="logits", target="label", options={"gamma": 2.0})
    values = [t.compute("f", out, batch) for t in (both, kw, opt)]
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(values[1], values[2])
    other = lk.Term("softmax_focal", input="logits", target="label", options={"gamma": 0.0})
    assert not torch.allclose(other.compute("f", out, batch), values[0])


def test_an_option_given_twice_is_refused() -> None:
    with pytest.raises(lk.errors.ConfigError, match=r"\['gamma'\] given both in options="):
        lk.Term("focal", gamma=2.0, options={"gamma": 1.0})


def test_options_need_a_mapping_and_a_catalogue_name() -> None:
    with pytest.raises(lk.errors.ConfigError, match="options must be a mapping"):
        lk.Term("focal", options=[("gamma", 2.0)])  # type: ignore[arg-type]
    with pytest.raises(lk.errors.ConfigError, match="only accepted with a catalogue name"):
        lk.Term(torch.nn.MSELoss(), options={"reduction": "sum"})


@pytest.mark.parametrize("weight", [torch.tensor([1.0, 2.0]), [1.0, 2.0]])
def test_class_weights_as_the_term_weight_say_where_they_go(weight: object) -> None:
    with pytest.raises(lk.errors.ConfigError, match=r"options=\{'weight'"):
        lk.Term("cross_entropy", input="logits", target="label", weight=weight)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task", "targets"),
    [
        ("multiclass", torch.tensor([0, 0, 0, 1, 2, 2])),
        ("binary", torch.tensor([0.0, 0.0, 0.0, 1.0])),
        ("multilabel", torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])),
        ("quantile", None),
        ("segmentation", None),
    ],
)
def test_recommended_python_runs_and_builds_the_recommended_loss(
    task: str, targets: torch.Tensor | None
) -> None:
    for rec in recommend(task, imbalance=True, targets=targets):  # type: ignore[arg-type]
        namespace: dict[str, object] = {}
        exec(rec.python("term"), namespace)
        term = namespace["term"]
        assert isinstance(term, lk.Term)
        for name, value in rec.options.items():
            got = getattr(term.loss, name)
            if isinstance(got, (torch.Tensor, list, tuple)):
                expected = torch.as_tensor(value, dtype=torch.float32)
                got = torch.as_tensor(got, dtype=torch.float32)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
            else:
                assert got == value
