"""A plain torch.nn loss in a Term is checked like the catalogue's (#17 item 11): the README's
own `Term(torch.nn.MSELoss())` must not broadcast (8,) against (8, 1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import losskit as lk


def _call(loss: nn.Module, x: torch.Tensor, y: torch.Tensor, **term: object) -> torch.Tensor:
    crit = lk.Criterion({"reg": lk.Term(loss, input="p", target="y", **term)})  # type: ignore[arg-type]
    return crit({"p": x}, {"y": y}).total


@pytest.mark.parametrize(
    ("loss", "x", "y", "match"),
    [
        (nn.MSELoss(), torch.zeros(8), torch.zeros(8, 1), r"broadcast them to \(8, 8\)"),
        (nn.L1Loss(), torch.zeros(8), torch.zeros(8, 1), r"broadcast"),
        (nn.HuberLoss(), torch.zeros(4, 2), torch.zeros(2, 4), r"same shape"),
        (nn.SmoothL1Loss(), torch.zeros(4), torch.zeros(4, dtype=torch.long), r"dtype int64"),
        (nn.BCEWithLogitsLoss(), torch.zeros(4), torch.zeros(4, 1), r"shape"),
        (nn.CrossEntropyLoss(), torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), r"\(3,\)"),
        (nn.NLLLoss(), torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.long), r"target"),
        (nn.KLDivLoss(reduction="batchmean"), torch.zeros(4, 3), torch.zeros(4), r"shape"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_a_plain_torch_nn_loss_is_checked_with_the_key(
    loss: nn.Module, x: torch.Tensor, y: torch.Tensor, match: str
) -> None:
    with pytest.raises(lk.LossInputError, match=rf"^term 'reg': torch\.nn\.\w+ .*{match}"):
        _call(loss, x, y)


def test_the_plain_module_is_still_the_one_called_with_its_hooks() -> None:
    loss = nn.MSELoss()
    seen: list[str] = []
    loss.register_forward_hook(lambda module, args, out: seen.append("hook"))
    total = _call(loss, torch.zeros(3), torch.full((3,), 2.0))
    torch.testing.assert_close(total, torch.tensor(4.0))
    assert seen == ["hook"]


def test_a_masked_plain_module_is_checked_too() -> None:
    with pytest.raises(lk.LossInputError, match=r"^term 'reg': torch\.nn\.MSELoss .*broadcast"):
        _call(
            nn.MSELoss(), torch.zeros(8), torch.zeros(8, 1), mask=lambda out, batch: torch.ones(8)
        )


def test_a_subclass_or_a_callable_is_left_to_itself() -> None:
    class Scaled(nn.MSELoss):
        def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(input, target.reshape(input.shape))

    assert lk.losses.contract_of(Scaled()) is None
    torch.testing.assert_close(_call(Scaled(), torch.zeros(4), torch.ones(4, 1)), torch.tensor(2.0))
    assert lk.losses.contract_of(lambda x, y: (x - y).mean()) is None
