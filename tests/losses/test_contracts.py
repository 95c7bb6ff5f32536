"""Input contracts of the wrapped torch.nn losses: each error message, each check mode."""

from __future__ import annotations

import pickle

import pytest
import torch

import losskit as lk
from losskit import losses
from losskit.losses.contracts import FIRST_CALLS

NAN = float("nan")


@pytest.mark.parametrize(
    ("name", "input", "target", "message"),
    [
        (
            "mse",
            torch.zeros(8),
            torch.zeros(8, 1),
            "MSELoss ('mse'): target has shape (8, 1) and input (8,): the loss would broadcast "
            "them to (8, 8); give both the same shape (e.g. target.squeeze(1))",
        ),
        (
            "l1",
            torch.zeros(4, 3),
            torch.zeros(2, 3),
            "L1Loss ('l1'): target has shape (2, 3) and input (4, 3): give both the same shape",
        ),
        (
            "mse",
            torch.zeros(4),
            torch.zeros(4, dtype=torch.long),
            "MSELoss ('mse'): target has dtype int64, expected a floating-point tensor of "
            "continuous values; cast with target.to(input.dtype)",
        ),
        (
            "mse",
            torch.zeros(4, dtype=torch.long),
            torch.zeros(4),
            "MSELoss ('mse'): input has dtype int64, expected a floating-point tensor of values",
        ),
        (
            "cross_entropy",
            torch.randn(4, 10),
            torch.tensor([0, 1, 10, 2]),
            "CrossEntropyLoss ('cross_entropy'): class index 10 out of range for 10 classes "
            "(input has 10 along dim 1)",
        ),
        (
            "cross_entropy",
            torch.randn(4, 3),
            torch.tensor([0, 1, -1, 2]),
            "class index -1 out of range for 3 classes",
        ),
        (
            "cross_entropy",
            torch.randn(4, 3).softmax(1),
            torch.tensor([0, 1, 2, 2]),
            "CrossEntropyLoss ('cross_entropy'): inputs look like probabilities (all in [0, 1], "
            "rows sum to 1 along dim 1): this loss expects raw logits; drop the softmax",
        ),
        (
            "cross_entropy",
            torch.randn(4, 3),
            torch.zeros(4, 1, dtype=torch.long),
            "target has shape (4, 1), expected (4,) for input (4, 3) (N, C, ...) with class "
            "indices; drop the singleton class dim with target.squeeze(1)",
        ),
        (
            "cross_entropy",
            torch.randn(2, 3, 5, 5),
            torch.zeros(2, 5, 4, dtype=torch.long),
            "target has shape (2, 5, 4), expected (2, 5, 5) for input (2, 3, 5, 5)",
        ),
        (
            "cross_entropy",
            torch.randn(4, 3),
            torch.tensor([0.0, 1.0, 2.0, 1.0]),
            "target has dtype float32, expected integer class indices (int64) or a float "
            "distribution of the input's shape; cast with target.long()",
        ),
        (
            "cross_entropy",
            torch.randn(4, 3),
            torch.full((4, 3), 0.5),
            "target does not sum to 1 along dim 1",
        ),
        (
            "nll",
            torch.randn(4, 3).abs() + 0.1,
            torch.tensor([0, 1, 2, 0]),
            "expected log-probabilities (<= 0); apply log_softmax",
        ),
        (
            "bce",
            torch.randn(6),
            torch.ones(6),
            "BCELoss ('binary_cross_entropy'): input values lie in",
        ),
        (
            "bce_logits",
            torch.rand(32),
            torch.ones(32),
            "inputs look like probabilities (all 32 values in [0, 1]): this loss expects raw "
            "logits; drop the sigmoid",
        ),
        (
            "bce_logits",
            torch.randn(5),
            torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0]),
            "target values lie in [0, 2], expected binary targets in [0, 1]",
        ),
        (
            "bce_logits",
            torch.randn(5),
            torch.tensor([0, 1, 2, 1, 0]),
            "target has dtype int64 with values in [0, 2], expected binary targets 0 or 1",
        ),
        (
            "soft_margin",
            torch.randn(4),
            torch.tensor([0.0, 1.0, 1.0, 0.0]),
            "target values must be -1 or 1, got values in [0, 1]; map 0/1 labels with 2 * y - 1",
        ),
        (
            "huber",
            torch.tensor([1.0, NAN, 2.0]),
            torch.zeros(3),
            "HuberLoss ('huber'): input has 1 NaN and 0 infinite values (of 3, shape (3,))",
        ),
        (
            "mse",
            torch.zeros(3),
            torch.tensor([1.0, float("inf"), 2.0]),
            "target has 0 NaN and 1 infinite values",
        ),
        (
            "kl_div",
            torch.randn(4, 3).log_softmax(1),
            torch.randn(4, 3),
            "target values lie in",
        ),
    ],
)
def test_contract_errors(
    name: str, input: torch.Tensor, target: torch.Tensor, message: str
) -> None:
    with pytest.raises(lk.LossInputError) as info:
        losses.get(name)(input, target)
    assert message in str(info.value)


def test_ignore_index_is_excluded_from_the_range_check() -> None:
    ce = losses.get("cross_entropy", ignore_index=255)
    logits, target = torch.randn(3, 4), torch.tensor([0, 255, 3])
    torch.testing.assert_close(
        ce(logits, target), torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    )
    with pytest.raises(lk.LossInputError, match=r"class index 254 .*\(ignore_index=255"):
        ce(logits, torch.tensor([0, 254, 3]))


def test_the_term_key_prefixes_contract_errors() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="p", target="y")})
    with pytest.raises(lk.LossInputError, match=r"^term 'reg': MSELoss \('mse'\): target has"):
        crit({"p": torch.zeros(4)}, {"y": torch.zeros(4, 1)})


def test_value_checks_run_on_the_first_calls_only_by_default() -> None:
    mse = losses.get("mse")
    for _ in range(FIRST_CALLS):
        mse(torch.zeros(2), torch.zeros(2))
    value = mse(torch.tensor([NAN, 0.0]), torch.zeros(2))  # past the first calls: not inspected
    assert torch.isnan(value)
    with pytest.raises(lk.LossInputError, match="shape"):  # shape checks stay on
        mse(torch.zeros(2), torch.zeros(3))


def test_check_always_and_off() -> None:
    always = losses.get("mse", check="always")
    for _ in range(FIRST_CALLS + 2):
        always(torch.zeros(2), torch.zeros(2))
    with pytest.raises(lk.LossInputError, match="NaN"):
        always(torch.tensor([NAN, 0.0]), torch.zeros(2))
    off = losses.get("cross_entropy", check="off")
    off(torch.randn(2, 3).softmax(1), torch.tensor([0, 1]))
    with pytest.raises(lk.LossInputError, match="dtype"):
        off(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(lk.ConfigError, match="check must be"):
        losses.get("mse", check="sometimes")


def test_wrapped_losses_are_torch_losses_and_pickle() -> None:
    mse = losses.get("mse", reduction="sum")
    assert isinstance(mse, torch.nn.MSELoss)
    restored = pickle.loads(pickle.dumps(mse))
    x, y = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(restored(x, y), torch.nn.functional.mse_loss(x, y, reduction="sum"))


def test_kl_div_with_log_target_expects_log_probabilities() -> None:
    kl = losses.get("kl_div", log_target=True, reduction="batchmean")
    p, q = torch.randn(4, 3).log_softmax(1), torch.randn(4, 3).log_softmax(1)
    torch.testing.assert_close(
        kl(p, q), torch.nn.functional.kl_div(p, q, log_target=True, reduction="batchmean")
    )
    with pytest.raises(lk.LossInputError, match="target has values up to"):
        kl(p, q.exp() + 0.5)


def test_compiled_criterion_keeps_shape_checks_and_skips_value_checks() -> None:
    crit = lk.Criterion({"ce": lk.Term("cross_entropy", input="x", target="y")}, check="off")
    compiled = torch.compile(crit, fullgraph=True, backend="eager")
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(
        compiled({"x": logits}, {"y": target}).total,
        torch.nn.functional.cross_entropy(logits, target),
    )


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "cosine_embedding",
            (torch.randn(4, 3), torch.randn(1, 3), torch.ones(4)),
            "its inputs must have one shape, got (4, 3), (1, 3)",
        ),
        (
            "cosine_embedding",
            (torch.randn(4, 3), torch.randn(4, 3), torch.ones(4, 1)),
            "target has shape (4, 1), expected (4,)",
        ),
        (
            "margin_ranking",
            (torch.randn(4), torch.randn(4), torch.ones(4, 1)),
            "its inputs must have one shape, got (4,), (4,), (4, 1)",
        ),
        (
            "triplet_margin",
            (torch.randn(4, 3), torch.randn(4, 3), torch.randn(3)),
            "got (4, 3), (4, 3), (3,)",
        ),
    ],
)
def test_multi_input_losses_never_broadcast(
    name: str, args: tuple[torch.Tensor, ...], message: str
) -> None:
    # pytorch/pytorch#53030: CosineEmbeddingLoss broadcast mismatched inputs silently.
    with pytest.raises(lk.LossInputError) as info:
        losses.get(name)(*args)
    assert message in str(info.value)


def test_small_positive_logits_of_an_untrained_head_are_not_called_probabilities() -> None:
    # A real first batch of a fresh linear head (new-user walk-through): 64 logits, all in
    # [0.02, 0.19]. Raw logits, not sigmoid outputs (those gather around 0.5).

    logits = torch.linspace(0.02, 0.19, 64).reshape(64, 1)
    target = (torch.arange(64) % 2).float().reshape(64, 1)
    value = losses.get("bce_logits")(logits, target)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(value, expected)
    # an untrained head's sigmoid outputs (around 0.5) and spread probabilities still refused
    for probabilities in (torch.sigmoid(logits), torch.linspace(0.05, 0.95, 64).reshape(64, 1)):
        with pytest.raises(lk.LossInputError, match="look like probabilities"):
            losses.get("bce_logits")(probabilities, target)
