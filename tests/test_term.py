"""One term: selectors, errors that name the key, masks and sample weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit as lk


def _settled(crit: lk.Criterion, outputs: dict[str, torch.Tensor], batch: object) -> None:
    """Run ``crit`` past its synchronous checks and its losses' value checks."""
    for _ in range(max(crit.check_steps, 3) + 1):
        crit(outputs, batch)
        crit.step()


def test_selection_by_position_and_callable() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", input=0, target=1),
            "b": lk.Term(
                "l1", input=lambda out, batch: out[1] * 2, target=lambda out, batch: batch[0]
            ),
        }
    )
    p, q = torch.randn(5), torch.randn(5)
    y0, y1 = torch.randn(5), torch.randn(5)
    res = crit((p, q), (y0, y1))
    torch.testing.assert_close(res["a"], F.mse_loss(p, y1))
    torch.testing.assert_close(res["b"], F.l1_loss(q * 2, y0))


def test_tensor_pair_without_selectors() -> None:
    crit = lk.Criterion({"mse": "mse", "l1": lk.Term("l1", weight=2.0)})
    x, y = torch.randn(7), torch.randn(7)
    torch.testing.assert_close(crit(x, y).total, F.mse_loss(x, y) + 2 * F.l1_loss(x, y))


def test_missing_output_key_lists_available_keys() -> None:
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="logit", target="label")})
    with pytest.raises(lk.LossInputError) as info:
        crit({"logits": torch.zeros(2, 3)}, {"label": torch.zeros(2, dtype=torch.long)})
    message = str(info.value)
    assert "term 'cls'" in message
    assert "'logit' not found in the outputs" in message
    assert "['logits']" in message


def test_missing_batch_key_points_to_where_it_is() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="value", target="value")})
    with pytest.raises(lk.LossInputError) as info:
        crit({"value": torch.zeros(2)}, {"y": torch.zeros(2)})
    assert "target key 'value' not found in the batch, which hold keys ['y']" in str(info.value)
    assert "'value' is in the outputs" in str(info.value)


def test_non_scalar_term_is_named() -> None:
    crit = lk.Criterion(
        {
            "ok": lk.Term("mse"),
            "bad": lk.Term(lambda out, batch: (out - batch).abs()),
        }
    )
    with pytest.raises(lk.LossInputError, match=r"term 'bad'.*shape \(3,\), expected a scalar"):
        crit(torch.zeros(3), torch.ones(3))


def test_unknown_loss_suggests_close_names() -> None:
    with pytest.raises(lk.ConfigError, match="did you mean 'cross_entropy'"):
        lk.Term("cross_entropi")


def test_mask_and_sample_weight_match_hand_computed_weighted_mean() -> None:
    g = torch.Generator().manual_seed(3)
    logits, label = torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    mask = torch.tensor([True, False, True, True, False, True])
    sw = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 2.0])
    crit = lk.Criterion(
        {
            "cls": lk.Term(
                "cross_entropy", input="logits", target="label", mask="m", sample_weight="w"
            )
        }
    )
    res = crit({"logits": logits}, {"label": label, "m": mask, "w": sw})
    per = F.cross_entropy(logits, label, reduction="none")
    w = mask.float() * sw
    torch.testing.assert_close(res["cls"], (per * w).sum() / w.sum())


def test_per_element_mask_on_a_module_loss() -> None:
    pred, target = torch.randn(2, 3), torch.randn(2, 3)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    user_loss = nn.MSELoss()
    crit = lk.Criterion({"r": lk.Term(user_loss, input="p", target="t", mask="m")})
    res = crit({"p": pred}, {"t": target, "m": mask})
    torch.testing.assert_close(res["r"], ((pred - target) ** 2 * mask).sum() / 3)
    assert user_loss.reduction == "mean"  # the user's module is not changed


def test_empty_mask_gives_zero_not_nan() -> None:
    crit = lk.Criterion({"r": lk.Term("mse", input="p", target="t", mask="m")})
    pred = torch.randn(4, requires_grad=True)
    target = torch.tensor([1.0, 0.0, 2.0, 3.0])
    res = crit({"p": pred}, {"t": target, "m": torch.zeros(4, dtype=torch.bool)})
    torch.testing.assert_close(res.total, torch.tensor(0.0))
    res.backward()
    torch.testing.assert_close(pred.grad, torch.zeros(4))


def test_mask_of_the_wrong_shape_is_never_broadcast() -> None:
    crit = lk.Criterion({"r": lk.Term("mse", input="p", target="t", mask="m")})
    with pytest.raises(lk.LossInputError, match=r"term 'r': mask has shape \(4, 1\)"):
        crit({"p": torch.zeros(4)}, {"t": torch.zeros(4), "m": torch.ones(4, 1)})


def test_mask_needs_an_unreducible_loss() -> None:
    with pytest.raises(lk.ConfigError, match="reduction='none'"):
        lk.Term(lambda x, y: (x - y).mean(), input="p", target="t", mask="m")


def test_a_target_without_input_reads_the_outputs_themselves() -> None:
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", target="label")})
    logits, label = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    torch.testing.assert_close(crit(logits, {"label": label}).total, F.cross_entropy(logits, label))
    with pytest.raises(lk.LossInputError, match="no input selector, so the input is the model"):
        crit({"logits": logits}, {"label": label})


def test_a_subclass_of_a_catalogue_loss_keeps_its_forward() -> None:
    # A subclass of a catalogue torch.nn loss that overrides forward is never bypassed.
    class Doubled(type(lk.losses.get("mse"))):  # type: ignore[misc]
        def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(input, target)  # type: ignore[no-any-return]

    crit = lk.Criterion({"reg": lk.Term(Doubled(), input="p", target="y")})
    outputs, batch = {"p": torch.zeros(4)}, {"y": torch.ones(4)}
    _settled(crit, outputs, batch)
    torch.testing.assert_close(crit(outputs, batch).total, torch.tensor(2.0))


def test_a_term_without_a_target_selector_says_so_and_what_the_batch_holds() -> None:
    # A new user's first mistake (#20): today an AttributeError or TypeError from the loss.
    outputs, batch = {"logits": torch.randn(4, 3)}, {"label": torch.tensor([0, 1, 2, 0])}
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="logits")})
    with pytest.raises(
        lk.LossInputError,
        match=r"term 'cls': the term has no target= selector, .*takes a target; the batch is a "
        r"mapping with keys \['label'\]",
    ):
        crit(outputs, batch)
    for loss in ("cross_entropy", nn.MSELoss()):
        crit = lk.Criterion({"cls": lk.Term(loss)})
        with pytest.raises(
            lk.LossInputError,
            match=r"no input= or target= selector, .*outputs \(a mapping with keys \['logits'\]\)"
            r" and batch \(a mapping with keys \['label'\]\)",
        ):
            crit(outputs, batch)
