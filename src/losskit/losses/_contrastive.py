"""Contrastive losses that train beside others: InfoNCE, CLIP's symmetric loss, SupCon.

Registry names (family ``"contrastive"``): ``info_nce`` (van den Oord et al. 2018), ``clip``
(Radford et al. 2021: InfoNCE both ways with a learned temperature) and
``supervised_contrastive`` (alias ``supcon``; Khosla et al. 2020). Embeddings are ``(N, D)``,
L2-normalised by the loss unless ``normalize=False``; the other samples of the batch are the
negatives, so a masked :class:`~losskit.Term` averages the selected anchors' losses while every
sample still serves as a negative. ``reduction="none"`` gives one loss per sample ``(N,)``.
Computed in float32 for half-precision inputs.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> crit = lk.Criterion({
    ...     "align": lk.Term("clip", input=("image", "text")),
    ...     "cls": lk.Term("cross_entropy", input="logits", target="label"),
    ... })
    >>> g = torch.Generator().manual_seed(0)
    >>> out = {"image": torch.randn(4, 8, generator=g), "text": torch.randn(4, 8, generator=g),
    ...        "logits": torch.zeros(4, 3)}
    >>> sorted(crit(out, {"label": torch.tensor([0, 1, 2, 0])}).log())[:3]
    ['loss', 'loss/align', 'loss/cls']
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses._elementwise import Reduction, check_reduction, compute_dtype
from losskit.losses.contracts import Check, Contract, ContractedLoss
from losskit.losses.registry import register

__all__ = ["ClipLoss", "InfoNCELoss", "SupervisedContrastiveLoss"]

_MAX_LOGIT_SCALE = 100.0  # CLIP clips its learned 1/temperature here


def _temperature(owner: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{owner}: temperature must be a finite number > 0, got {value!r}")
    return value


def _reduce(loss: Tensor, reduction: Reduction, dtype: torch.dtype) -> Tensor:
    if reduction == "none":
        return loss.to(dtype)
    return loss.mean() if reduction == "mean" else loss.sum()


@register("info_nce", family="contrastive", aliases=("infonce", "ntxent_pairs"))
class InfoNCELoss(ContractedLoss, nn.Module):
    """InfoNCE: cross-entropy of each query against its paired key among the batch's keys.

    ``logits = q k^T / temperature`` of the normalised embeddings; sample ``i``'s loss is
    ``-log softmax(logits[i])[i]``, and with ``symmetric=True`` the mean of that and the
    key-to-query direction ``-log softmax(logits[:, i])[i]`` (CLIP's loss).

    Args:
        temperature: divides the cosine similarities (0.07 in CLIP and MoCo).
        symmetric: average both directions.
        learn_temperature: learn ``log(1 / temperature)`` as a parameter (CLIP), its scale
            clipped at 100.
        normalize: L2-normalise the embeddings first.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` ``(N,)``.

    Example::

        >>> import torch
        >>> q = torch.eye(3)
        >>> InfoNCELoss(temperature=1.0, reduction="none")(q, q)  # -log(e / (e + 2))
        tensor([0.5514, 0.5514, 0.5514])
    """

    # The key is checked as a target: a float of the query's shape, finite.
    contract: ClassVar[Contract] = Contract("values", "continuous", "same")
    couples_samples: ClassVar[bool] = True
    """Each sample enters the others' terms: a Term refuses ``mask=``/``sample_weight=``."""
    loss_name: ClassVar[str] = "info_nce"

    def __init__(
        self,
        temperature: float = 0.07,
        symmetric: bool = False,
        learn_temperature: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        log_scale = torch.tensor(-math.log(_temperature(owner, temperature)))
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale, persistent=False)
        self.symmetric, self.learn_temperature, self.normalize = (
            symmetric,
            learn_temperature,
            normalize,
        )
        self.reduction: Reduction = check_reduction(owner, reduction)
        self._init_check(check)

    @property
    def temperature(self) -> Tensor:
        """The current temperature (learned with ``learn_temperature=True``)."""
        return 1.0 / self.log_scale.exp().clamp(max=_MAX_LOGIT_SCALE)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        self.check_inputs(query, key)
        if query.ndim != 2:
            raise LossInputError(
                f"{self.display_name}: query has shape {tuple(query.shape)} and key "
                f"{tuple(key.shape)} ({key.dtype}), expected two float embeddings (N, D) of the "
                "same shape, row i of each a positive pair"
            )
        q = query.to(compute_dtype(query.dtype))
        k = key.to(q.dtype)
        if self.normalize:
            q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = self.log_scale.exp().clamp(max=_MAX_LOGIT_SCALE).to(q.dtype) * q @ k.T
        labels = torch.arange(q.shape[0], device=q.device)
        loss = F.cross_entropy(logits, labels, reduction="none")
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, labels, reduction="none")) / 2
        return _reduce(loss, self.reduction, query.dtype)

    def extra_repr(self) -> str:
        return f"symmetric={self.symmetric}, reduction={self.reduction!r}"


@register("clip", family="contrastive", aliases=("clip_loss",))
class ClipLoss(InfoNCELoss):
    """CLIP's symmetric contrastive loss: :class:`InfoNCELoss` both ways, temperature learned.

    Starts at temperature 0.07 (logit scale ``1/0.07``) as CLIP, learns its log, clipped at a
    scale of 100. ``ClipLoss(learn_temperature=False)`` keeps it fixed.

    Example::

        >>> import torch
        >>> loss = ClipLoss()
        >>> round(loss.temperature.item(), 2), loss.symmetric
        (0.07, True)
    """

    loss_name: ClassVar[str] = "clip"

    def __init__(
        self,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        normalize: bool = True,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__(
            temperature,
            symmetric=True,
            learn_temperature=learn_temperature,
            normalize=normalize,
            reduction=reduction,
            check=check,
        )


@register("supervised_contrastive", family="contrastive", aliases=("supcon",))
class SupervisedContrastiveLoss(ContractedLoss, nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020, eq. 2, ``L_out``).

    For anchor ``i`` with positives ``P(i)`` (the other samples, views included, of its label)
    and ``A(i)`` every other sample:
    ``-(temperature / base_temperature) / |P(i)| sum_{p in P(i)} log(exp(z_i.z_p / T) /
    sum_{a in A(i)} exp(z_i.z_a / T))``. An anchor without positives scores 0 (as the authors'
    code does); a sample's loss averages its views'.

    Args:
        temperature: ``T`` (0.07 in the paper); ``base_temperature`` scales the loss by
            ``T / base_temperature`` (the authors' code; equal by default).
        normalize: L2-normalise the features first.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` ``(N,)``.

    Example::

        >>> import torch
        >>> features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> loss = SupervisedContrastiveLoss(temperature=1.0, reduction="none")
        >>> loss(features, torch.tensor([0, 0, 1]))  # anchor 2 has no positive
        tensor([0.3133, 0.3133, 0.0000])
    """

    contract: ClassVar[Contract] = Contract("values", "any", "any")
    loss_name: ClassVar[str] = "supervised_contrastive"
    couples_samples: ClassVar[bool] = True
    """Each sample enters the others' terms: a Term refuses ``mask=``/``sample_weight=``."""

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float | None = None,
        normalize: bool = True,
        reduction: Reduction = "mean",
        check: Check = "first",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = _temperature(owner, temperature)
        self.base_temperature = _temperature(
            owner, temperature if base_temperature is None else base_temperature
        )
        self.normalize = normalize
        self.reduction: Reduction = check_reduction(owner, reduction)
        self._init_check(check)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """``features``: ``(N, D)`` or ``(N, V, D)`` with ``V`` views; ``labels``: ``(N,)`` ints."""
        self.check_inputs(features, labels)
        if features.ndim not in (2, 3) or labels.shape != features.shape[:1]:
            raise LossInputError(
                f"{self.display_name}: features have shape {tuple(features.shape)} and labels "
                f"{tuple(labels.shape)}, expected features (N, D) or (N, views, D) and labels (N,)"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise LossInputError(
                f"{self.display_name}: labels have dtype {labels.dtype}, expected integer class "
                "labels; cast with labels.long()"
            )
        z = features.to(compute_dtype(features.dtype))
        z = z.unsqueeze(1) if z.ndim == 2 else z
        n, views, _ = z.shape
        z = z.transpose(0, 1).reshape(n * views, -1)  # view-major, as the authors' code
        if self.normalize:
            z = F.normalize(z, dim=1)
        y = labels.repeat(views)
        logits = z @ z.T / self.temperature
        self_pair = torch.eye(n * views, dtype=torch.bool, device=z.device)
        log_prob = logits - logits.masked_fill(self_pair, -math.inf).logsumexp(1, keepdim=True)
        positive = (y.unsqueeze(0) == y.unsqueeze(1)) & ~self_pair
        count = positive.sum(1)
        mean_log_prob = torch.where(positive, log_prob, 0.0).sum(1) / count.clamp_min(1)
        loss = -(self.temperature / self.base_temperature) * mean_log_prob
        loss = loss.view(views, n).mean(0)
        return _reduce(loss, self.reduction, features.dtype)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
