"""Every ``torch.nn`` loss, registered under its snake_case name (the ``torch.nn.functional`` one).

Each entry is a subclass of the ``torch.nn`` module with the same name that checks its inputs
against a :class:`~losskit.losses.contracts.Contract` and then runs PyTorch's own forward, so
values and gradients are PyTorch's. ``isinstance(losses.get("mse"), torch.nn.MSELoss)`` holds,
and every constructor takes ``check="first" | "always" | "off"`` besides torch's arguments.
The two binary cross-entropies also take ``label_smoothing`` (the target becomes
``t (1 - s) + s / 2``) and ``ignore_index`` (elements left out, ``"mean"`` over the rest), as
smp's ``SoftBCEWithLogitsLoss``; they and ``multilabel_soft_margin`` cast integer or bool 0/1
targets to the input's dtype.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> ce = losses.get("cross_entropy")
    >>> ce(torch.tensor([[0.2, 0.8]]), torch.tensor([1]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    losskit.errors.LossInputError: CrossEntropyLoss ('cross_entropy'): inputs look like ...
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError, LossInputError
from losskit.losses._options import check_choice, check_number
from losskit.losses.contracts import Check, Contract, ContractedLoss, as_float_target
from losskit.losses.registry import register

__all__ = ["contract_of"]

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
        "linear_cross_entropy_head",
        (),
        "classification",
        "torch.nn.LinearCrossEntropyLoss, which owns its projection (in_features, num_classes); "
        "linear_cross_entropy takes the weight as an input.",
    ),
)


_VALUES = Contract("values", "continuous", "same")
_FIRST_ARG_ONLY = Contract("values", "any", "any")
_CONTRACTS: dict[str, Contract] = {
    "l1": _VALUES,
    "mse": _VALUES,
    "huber": _VALUES,
    "smooth_l1": _VALUES,
    "gaussian_nll": _VALUES,
    "poisson_nll": _VALUES,
    "cross_entropy": Contract("logits", "class_indices_or_probabilities", "class_dim"),
    "nll": Contract("log_probabilities", "class_indices", "class_dim"),
    "binary_cross_entropy": Contract("probabilities", "binary", "same"),
    "binary_cross_entropy_with_logits": Contract("logits", "binary", "same"),
    "kl_div": Contract("log_probabilities", "probabilities", "same"),
    "multilabel_soft_margin": Contract("logits", "binary", "same"),
    "multilabel_margin": _FIRST_ARG_ONLY,
    "multi_margin": Contract("values", "class_indices", "class_dim"),
    "soft_margin": Contract("values", "sign", "same"),
    "hinge_embedding": Contract("values", "sign", "same"),
    "linear_cross_entropy_head": _FIRST_ARG_ONLY,
}
# Losses of three or more tensors: the first (the prediction) is checked.
_MULTI_INPUT = {
    "cosine_embedding",
    "margin_ranking",
    "triplet_margin",
    "triplet_margin_with_distance",
    "ctc",
}
# Losses whose mean leaves out ignore_index targets (torch gives NaN when it leaves out all).
_IGNORING = {"cross_entropy", "nll", "linear_cross_entropy_head"}
_KL_LOG_TARGET = Contract("log_probabilities", "log_probabilities", "same")


# Losses over several inputs whose shapes torch would broadcast silently (pytorch/pytorch#53030):
# the inputs that must match, and for the pairwise ones the target's shape (N,) or input's.
_SAME_SHAPE_INPUTS = {
    "cosine_embedding": 2,
    "margin_ranking": 3,
    "triplet_margin": 3,
    "triplet_margin_with_distance": 3,
}


def _check_same_shapes(display: str, name: str, args: tuple[Any, ...]) -> None:
    count = _SAME_SHAPE_INPUTS.get(name)
    if count is None:
        return
    shapes = [tuple(a.shape) for a in args[:count] if isinstance(a, Tensor)]
    if len(set(shapes)) > 1:
        raise LossInputError(
            f"{display}: its inputs must have one shape, got {', '.join(map(str, shapes))}; "
            "they are never broadcast"
        )
    if name == "cosine_embedding" and len(args) > 2 and isinstance(args[2], Tensor):
        expected = shapes[0][:-1]
        if tuple(args[2].shape) != expected:
            raise LossInputError(
                f"{display}: target has shape {tuple(args[2].shape)}, expected {expected} (one "
                "+1/-1 per pair of rows); it is never broadcast"
            )


# Options torch takes at construction but refuses (or misuses) only at the first call, or refuses
# with a bare ValueError: ranges (low, high, low_open) checked when the loss is built.
_RANGES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "huber": {"delta": (0.0, math.inf, True)},
    "smooth_l1": {"beta": (0.0, math.inf, False)},
    "cross_entropy": {"label_smoothing": (0.0, 1.0, False)},
    "gaussian_nll": {"eps": (0.0, math.inf, False)},
    "poisson_nll": {"eps": (0.0, math.inf, False)},
    "cosine_embedding": {"margin": (-1.0, 1.0, False)},
    "triplet_margin": {"margin": (0.0, math.inf, True), "p": (0.0, math.inf, True)},
    "triplet_margin_with_distance": {"margin": (0.0, math.inf, True)},
    "ctc": {"blank": (0.0, math.inf, False)},
}
_CHOICES: dict[str, dict[str, tuple[object, ...]]] = {
    "multi_margin": {"p": (1, 2)},
}
_REDUCTIONS = ("none", "mean", "sum")
_KL_REDUCTIONS = (*_REDUCTIONS, "batchmean")


def _check_options(display: str, name: str, options: dict[str, Any]) -> None:
    """Refuse options the loss cannot work with, naming the loss and the option."""
    if "reduction" in options:
        reductions = _KL_REDUCTIONS if name == "kl_div" else _REDUCTIONS
        check_choice(display, "reduction", options["reduction"], reductions)
    for option, (low, high, low_open) in _RANGES.get(name, {}).items():
        if option in options:
            check_number(display, option, options[option], low=low, high=high, low_open=low_open)
    for option, choices in _CHOICES.get(name, {}).items():
        if option in options:
            check_choice(display, option, options[option], choices)


# Options losskit adds to a torch loss (keyword-only, with their defaults).
_BCE_EXTRAS: dict[str, object] = {"label_smoothing": 0.0, "ignore_index": None}
_EXTRAS: dict[str, dict[str, object]] = {
    "binary_cross_entropy": _BCE_EXTRAS,
    "binary_cross_entropy_with_logits": _BCE_EXTRAS,
}
_RENAMED_BCE = {
    "smooth_factor": "smp's smooth_factor=f (target t (1 - 2f) + f) is label_smoothing=2*f "
    "(target t (1 - s) + s / 2)",
}
_RENAMED: dict[str, dict[str, str]] = {
    "binary_cross_entropy": _RENAMED_BCE,
    "binary_cross_entropy_with_logits": _RENAMED_BCE,
}
# Losses on binary targets: integer or bool 0/1 targets are cast to the input's dtype.
_BINARY_TARGETS = {
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "multilabel_soft_margin",
}


def _signature(base: type[nn.Module], name: str) -> inspect.Signature:
    """``base.__init__``'s signature with losskit's keyword-only options and ``check`` added."""
    signature = inspect.signature(base.__init__)
    keyword = inspect.Parameter.KEYWORD_ONLY
    extras = [inspect.Parameter(k, keyword, default=v) for k, v in _EXTRAS.get(name, {}).items()]
    check = inspect.Parameter("check", keyword, default="first")
    return signature.replace(parameters=[*signature.parameters.values(), *extras, check])


def _smoothed_bce(module: Any, input: Tensor, target: Tensor) -> Tensor:
    """BCE with ``label_smoothing`` and ``ignore_index`` (smp's ``SoftBCEWithLogitsLoss``).

    The smoothed target is ``t (1 - s) + s / 2`` (Keras's, and ``cross_entropy``'s over two
    classes); ignored elements have loss 0 and ``"mean"`` divides by the elements left.
    """
    valid = None if module.ignore_index is None else target != module.ignore_index
    t = target if valid is None else target.masked_fill(~valid, 0.0)
    if module.label_smoothing:
        t = t * (1.0 - module.label_smoothing) + module.label_smoothing / 2
    if module.loss_name == "binary_cross_entropy":
        loss = F.binary_cross_entropy(input, t, module.weight, reduction="none")
    else:
        loss = F.binary_cross_entropy_with_logits(
            input, t, module.weight, pos_weight=module.pos_weight, reduction="none"
        )
    if valid is not None:
        loss = loss * valid
    if module.reduction == "none":
        return loss
    if module.reduction == "sum" or valid is None:
        return loss.sum() if module.reduction == "sum" else loss.mean()
    count = valid.sum()
    return torch.where(count > 0, loss.sum() / count.clamp_min(1), torch.zeros_like(loss.sum()))


def _checked(base: type[nn.Module], name: str, contract: Contract) -> type[nn.Module]:
    """A subclass of ``base`` that checks its inputs against ``contract`` before ``forward``."""

    display = f"{base.__name__} ({name!r})"
    torch_signature = inspect.signature(base.__init__)

    extras = _EXTRAS.get(name, {})

    def __init__(self: Any, *args: Any, check: Check = "first", **kwargs: Any) -> None:  # noqa: N807
        options = {k: kwargs.pop(k, default) for k, default in extras.items()}
        try:
            bound = torch_signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{display}: {exc}") from exc
        bound.apply_defaults()
        _check_options(display, name, bound.arguments)
        try:
            base.__init__(self, *args, **kwargs)
        except ValueError as exc:  # torch's own checks of its options
            raise ConfigError(f"{display}: {exc}") from exc
        self._init_check(check)
        if extras:
            smoothing = check_number(
                display, "label_smoothing", options["label_smoothing"], low=0.0, high=1.0
            )
            self.label_smoothing = smoothing
            self.ignore_index = options["ignore_index"]
        if name == "kl_div" and self.log_target:
            self.__dict__["contract"] = _KL_LOG_TARGET

    def forward_first_checked(self: Any, *args: Any) -> Tensor:
        self.check_inputs(args[0])
        _check_same_shapes(self.display_name, name, args)
        return base.forward(self, *args)  # type: ignore[no-any-return]

    ignoring = name in _IGNORING
    binary = name in _BINARY_TARGETS

    def forward_pair_checked(self: Any, input: Tensor, target: Tensor, *args: Any) -> Tensor:
        state = self.__dict__["_check_state"]
        # What check_inputs decides first, without its frame: nothing to look at again.
        if not (
            state.settled
            and target is not None
            and (input.shape, input.dtype, target.shape, target.dtype, target.device)
            == state.passed
        ):
            self.check_inputs(input, target, ignore_index=self.__dict__.get("ignore_index"))
        if binary:
            target = as_float_target(target, input)
            if extras and (self.label_smoothing or self.ignore_index is not None):
                return _smoothed_bce(self, input, target)
        value: Tensor = base.forward(self, input, target, *args)
        if (
            ignoring
            and self.reduction == "mean"
            and self.ignore_index is not None
            and not target.is_floating_point()
        ):
            # torch's mean over no target is 0/0 = NaN: a padding-only batch gives 0 instead.
            # Only the value needs it: the gradient of that mean is already exactly 0 (no target
            # contributes), so the fix is made in place on the detached value, with no autograd
            # node and no backward kernel (the loss's backward does not read its own output).
            value.detach().masked_fill_(target.eq(self.ignore_index).all(), 0.0)
        return value

    # The signature shows torch's arguments and check, so configs are checked against it.
    __init__.__signature__ = _signature(base, name)  # type: ignore[attr-defined]
    forward = forward_first_checked if name in _MULTI_INPUT else forward_pair_checked

    namespace = {
        "__init__": __init__,
        "forward": forward,
        "contract": contract,
        "loss_name": name,
        "renamed_options": _RENAMED.get(name, {}),
        "__module__": __name__,
        "__qualname__": base.__name__,
        "__doc__": f"``torch.nn.{base.__name__}`` checked against losskit's input contract.",
    }
    return type(base.__name__, (ContractedLoss, base), namespace)


# torch's own classes (exactly: a subclass may change what forward does) -> their contract
_PLAIN: dict[type[nn.Module], tuple[str, Contract]] = {}


def contract_of(loss: object) -> tuple[str, Contract] | None:
    """The catalogue name and input contract of a plain ``torch.nn`` loss module (an instance
    of one of torch's own classes, not a subclass), for a :class:`~losskit.Term` to check a
    loss it did not build; None for anything else. A loss taking one input and a target only.

    Example::

        >>> import torch
        >>> contract_of(torch.nn.MSELoss())[0]
        'mse'
        >>> contract_of(lambda x, y: (x - y).abs().mean()) is None
        True
    """
    found = _PLAIN.get(type(loss))  # type: ignore[arg-type]  # any object may be asked
    if found is None:
        return None
    name = found[0]
    if name == "kl_div" and getattr(loss, "log_target", False):
        return name, _KL_LOG_TARGET
    return found


for _base, _name, _aliases, _family, _description in _TORCH_NN_LOSSES:
    if _name not in _MULTI_INPUT:
        _PLAIN[_base] = (_name, _CONTRACTS.get(_name, _FIRST_ARG_ONLY))
    _cls = _checked(_base, _name, _CONTRACTS.get(_name, _FIRST_ARG_ONLY))
    globals()[_base.__name__] = _cls  # importable by name, so modules holding it pickle
    register(_name, family=_family, description=_description, aliases=_aliases)(_cls)
del _base, _name, _aliases, _family, _description, _cls
