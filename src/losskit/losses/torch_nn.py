"""Every ``torch.nn`` loss, registered under its snake_case name (the ``torch.nn.functional`` one).

Each entry builds the ``torch.nn`` module itself, so values and gradients are PyTorch's own.
"""

from __future__ import annotations

from torch import nn

from losskit.losses.registry import register

__all__: list[str] = []

# (torch.nn class, canonical name, aliases, family, description)
_TORCH_NN_LOSSES: tuple[tuple[type[nn.Module], str, tuple[str, ...], str, str], ...] = (
    (nn.L1Loss, "l1", ("mae",), "regression", "Mean absolute error."),
    (nn.MSELoss, "mse", ("l2",), "regression", "Mean squared error."),
    (
        nn.HuberLoss,
        "huber",
        (),
        "regression",
        "Huber loss: quadratic below delta, linear above; robust to outliers.",
    ),
    (
        nn.SmoothL1Loss,
        "smooth_l1",
        (),
        "regression",
        "Smooth L1 (Huber divided by beta), as in Fast R-CNN box regression.",
    ),
    (
        nn.GaussianNLLLoss,
        "gaussian_nll",
        (),
        "regression",
        "Negative log-likelihood of a Gaussian with predicted mean and variance.",
    ),
    (
        nn.PoissonNLLLoss,
        "poisson_nll",
        (),
        "regression",
        "Poisson negative log-likelihood for counts (log-rate input by default).",
    ),
    (
        nn.CrossEntropyLoss,
        "cross_entropy",
        ("ce",),
        "classification",
        "Cross-entropy on logits with class-index or probability targets.",
    ),
    (
        nn.NLLLoss,
        "nll",
        (),
        "classification",
        "Negative log-likelihood on log-probabilities with class-index targets.",
    ),
    (
        nn.BCELoss,
        "binary_cross_entropy",
        ("bce",),
        "classification",
        "Binary cross-entropy on probabilities (prefer bce_with_logits for stability).",
    ),
    (
        nn.BCEWithLogitsLoss,
        "binary_cross_entropy_with_logits",
        ("bce_with_logits", "bce_logits"),
        "classification",
        "Binary cross-entropy on logits, computed stably in log space.",
    ),
    (
        nn.KLDivLoss,
        "kl_div",
        ("kl",),
        "distribution",
        "Kullback-Leibler divergence; input is log-probabilities.",
    ),
    (
        nn.MultiLabelSoftMarginLoss,
        "multilabel_soft_margin",
        (),
        "classification",
        "Multi-label one-versus-all logistic loss.",
    ),
    (
        nn.MultiLabelMarginLoss,
        "multilabel_margin",
        (),
        "classification",
        "Multi-label margin (hinge) loss with class-index targets.",
    ),
    (
        nn.MultiMarginLoss,
        "multi_margin",
        (),
        "classification",
        "Multi-class margin (hinge) loss.",
    ),
    (
        nn.SoftMarginLoss,
        "soft_margin",
        (),
        "classification",
        "Two-class logistic loss with targets in {-1, 1}.",
    ),
    (
        nn.HingeEmbeddingLoss,
        "hinge_embedding",
        (),
        "metric",
        "Hinge loss on distances with targets in {-1, 1}.",
    ),
    (
        nn.CosineEmbeddingLoss,
        "cosine_embedding",
        (),
        "metric",
        "Cosine similarity loss for pairs with targets in {-1, 1}.",
    ),
    (
        nn.MarginRankingLoss,
        "margin_ranking",
        (),
        "metric",
        "Ranking hinge loss for pairs of scores.",
    ),
    (
        nn.TripletMarginLoss,
        "triplet_margin",
        ("triplet",),
        "metric",
        "Triplet margin loss on anchor, positive and negative embeddings.",
    ),
    (
        nn.TripletMarginWithDistanceLoss,
        "triplet_margin_with_distance",
        (),
        "metric",
        "Triplet margin loss with a custom distance function.",
    ),
    (
        nn.CTCLoss,
        "ctc",
        (),
        "sequence",
        "Connectionist temporal classification for unaligned sequences.",
    ),
    (
        nn.LinearCrossEntropyLoss,
        "linear_cross_entropy",
        (),
        "classification",
        "Cross-entropy of a linear projection, chunked so the logits are not materialised.",
    ),
)

for _cls, _name, _aliases, _family, _description in _TORCH_NN_LOSSES:
    register(_name, family=_family, description=_description, aliases=_aliases)(_cls)
