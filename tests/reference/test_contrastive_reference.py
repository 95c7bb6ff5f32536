"""InfoNCE, CLIP and supervised contrastive losses against their papers' formulas, computed
anchor by anchor in float64, and SupCon against MONAI 1.6.1's ``ContrastiveLoss`` (SimCLR's
NT-Xent): two views with every sample its own class is NT-Xent, so MONAI's
``ContrastiveLoss(temperature=t)(a, b)`` is ``SupervisedContrastiveLoss(temperature=t)(
torch.stack([a, b], 1), torch.arange(N))``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

monai_losses = pytest.importorskip("monai.losses")

from losskit.losses._contrastive import (  # noqa: E402
    ClipLoss,
    InfoNCELoss,
    SupervisedContrastiveLoss,
)


def _embeddings(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _info_nce(q: torch.Tensor, k: torch.Tensor, t: float) -> list[float]:
    """van den Oord et al. 2018, eq. 4, one anchor at a time."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    out = []
    for i in range(len(q)):
        scores = [math.exp(float(q[i] @ k[j]) / t) for j in range(len(k))]
        out.append(-math.log(scores[i] / sum(scores)))
    return out


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_info_nce_follows_the_formula(temperature: float) -> None:
    q, k = _embeddings(6, 4), _embeddings(6, 4, seed=1)
    expected = torch.tensor(_info_nce(q, k, temperature), dtype=torch.float64)
    actual = InfoNCELoss(temperature=temperature, reduction="none")(q, k)
    torch.testing.assert_close(actual, expected)


def test_clip_is_the_mean_of_both_directions() -> None:
    image, text = _embeddings(5, 8), _embeddings(5, 8, seed=2)
    forward = torch.tensor(_info_nce(image, text, 0.07), dtype=torch.float64)
    backward = torch.tensor(_info_nce(text, image, 0.07), dtype=torch.float64)
    clip = ClipLoss(reduction="none").double()
    torch.testing.assert_close(clip(image, text), (forward + backward) / 2)
    # CLIP's pseudocode: (CE(logits, labels) + CE(logits.T, labels)) / 2 at logit scale 1/0.07
    logits = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T / 0.07
    labels = torch.arange(5)
    pseudo = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(ClipLoss().double()(image, text), pseudo)


def _supcon(z: torch.Tensor, y: torch.Tensor, t: float) -> list[float]:
    """Khosla et al. 2020, eq. 2 (L_out), over the rows of ``z``; no positive scores 0."""
    z = F.normalize(z, dim=1)
    out = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives]
        out.append(-sum(terms) / len(terms) if terms else 0.0)
    return out


@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_supcon_follows_the_formula(temperature: float) -> None:
    z, y = _embeddings(7, 5), torch.tensor([0, 1, 0, 2, 1, 0, 3])  # label 2 and 3 alone
    expected = torch.tensor(_supcon(z, y, temperature), dtype=torch.float64)
    actual = SupervisedContrastiveLoss(temperature=temperature, reduction="none")(z, y)
    torch.testing.assert_close(actual, expected)


def test_supcon_views_and_base_temperature() -> None:
    z, y = _embeddings(4, 2, 3), torch.tensor([0, 1, 1, 0])
    flat = torch.cat([z[:, 0], z[:, 1]])  # the authors' view-major order
    per_anchor = torch.tensor(_supcon(flat, y.repeat(2), 0.2), dtype=torch.float64)
    expected = per_anchor.view(2, 4).mean(0) * 0.2 / 0.07
    actual = SupervisedContrastiveLoss(0.2, base_temperature=0.07, reduction="none")(z, y)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_supcon_of_two_views_is_monais_nt_xent(temperature: float) -> None:
    a, b = _embeddings(6, 5).float(), _embeddings(6, 5, seed=3).float()
    a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    theirs = monai_losses.ContrastiveLoss(temperature=temperature)(a1, b)
    ours = SupervisedContrastiveLoss(temperature)(torch.stack([a2, b], 1), torch.arange(6))
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(a2.grad, a1.grad)
