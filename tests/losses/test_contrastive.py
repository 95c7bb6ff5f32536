"""The contrastive losses: gradients (gradcheck in float64), the learned temperature, their use
beside other terms in a Criterion, and the input errors."""

from __future__ import annotations

import pytest
import torch

import losskit as lk
from losskit import losses
from losskit.errors import ConfigError, LossInputError


def _embeddings(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", ["info_nce", "clip"])
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_pairs(name: str, normalize: bool) -> None:
    loss = losses.get(name, temperature=0.5, normalize=normalize).double()
    q, k = _embeddings(5, 4), _embeddings(5, 4, seed=1)
    assert torch.autograd.gradcheck(loss, (q.requires_grad_(), k.requires_grad_()))


@pytest.mark.parametrize("shape", [(6, 4), (6, 2, 4)])
def test_gradcheck_supcon(shape: tuple[int, ...]) -> None:
    loss = losses.get("supcon", temperature=0.3)
    labels = torch.tensor([0, 1, 0, 2, 1, 1])
    z = _embeddings(*shape)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels), (z.requires_grad_(),))


def test_clip_learns_its_temperature_and_info_nce_does_not() -> None:
    assert [n for n, _ in losses.get("info_nce").named_parameters()] == []
    clip = losses.get("clip")
    optimizer = torch.optim.SGD(clip.parameters(), lr=1.0)
    image, text = _embeddings(8, 4).float(), _embeddings(8, 4, seed=1).float()
    before = clip.temperature.item()
    clip(image, text).backward()
    optimizer.step()
    assert clip.temperature.item() != before


def test_a_contrastive_term_beside_a_classification_term() -> None:
    crit = lk.Criterion(
        {
            "supcon": lk.Term("supcon", input="z", target="y", weight=0.5),
            "ce": lk.Term("cross_entropy", input="logits", target="y"),
        }
    )
    z, logits = _embeddings(6, 4).float(), torch.zeros(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    res = crit({"z": z, "logits": logits}, {"y": y})
    torch.testing.assert_close(res["supcon"], losses.get("supcon")(z, y))
    torch.testing.assert_close(res.total, 0.5 * res["supcon"] + res["ce"])


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "info_nce",
            (torch.zeros(4, 3), torch.zeros(5, 3)),
            r"InfoNCELoss \('info_nce'\).*same shape",
        ),
        ("clip", (torch.zeros(4, 3, 2), torch.zeros(4, 3, 2)), r"expected two float embeddings"),
        ("supcon", (torch.zeros(4, 3), torch.zeros(4)), r"labels have dtype torch.float32"),
        ("supcon", (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long)), r"labels \(N,\)"),
    ],
)
def test_input_errors(name: str, args: tuple[torch.Tensor, ...], message: str) -> None:
    with pytest.raises(LossInputError, match=message):
        losses.get(name)(*args)


def test_non_finite_embeddings_are_refused_by_name() -> None:
    key = torch.zeros(4, 3)
    key[1, 2] = float("nan")
    with pytest.raises(LossInputError, match=r"InfoNCELoss \('info_nce'\): target has"):
        losses.get("info_nce")(torch.ones(4, 3), key)
    with pytest.raises(LossInputError, match=r"SupervisedContrastiveLoss .*: input has"):
        losses.get("supcon")(key, torch.zeros(4, dtype=torch.long))


def test_temperature_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
        losses.get("info_nce", temperature=0.0)


@pytest.mark.parametrize("name", ["info_nce", "clip", "supervised_contrastive"])
def test_a_mask_on_a_batch_coupled_loss_is_refused(name: str) -> None:
    import losskit as lk

    with pytest.raises(lk.ConfigError, match="couples the samples of a batch"):
        lk.Term(name, input="z", target="y", mask="keep")
    with pytest.raises(lk.ConfigError, match="select the kept samples before the criterion"):
        lk.Term(name, input="z", target="y", sample_weight="w")
