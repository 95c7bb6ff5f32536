"""The loss catalogue: every loss by name, with one-line descriptions and families.

Importing this package registers every ``torch.nn`` loss and losskit's own families
(classification, large-vocabulary, regression, segmentation, Lovász, robust, image,
contrastive); losskit's own loss classes are importable from here (``losses.FocalLoss``,
``losses.DiceLoss``, ...), the family modules are private.

Example::

    >>> from losskit import losses
    >>> losses.get("bce_logits")
    BCEWithLogitsLoss()
    >>> {"focal", "dice", "quantile", "lovasz_softmax"} <= {s.name for s in losses.available()}
    True
    >>> losses.FocalLoss(gamma=2.0)
    FocalLoss(gamma=2.0, alpha=0.25, reduction='mean')
"""

# Importing the family modules registers their losses.
from losskit.losses import _torch_nn  # noqa: F401  (the checked torch.nn losses)
from losskit.losses._classification import (
    AsymmetricLoss,
    DistillationKLLoss,
    FocalLoss,
    HingeLoss,
    MulticlassHingeLoss,
    MulticlassSquaredHingeLoss,
    SoftmaxFocalLoss,
    SoftTargetCrossEntropyLoss,
    SquaredHingeLoss,
    ZLoss,
)
from losskit.losses._cldice import SoftClDiceLoss
from losskit.losses._contrastive import (
    ClipLoss,
    InfoNCELoss,
    SupervisedContrastiveLoss,
)
from losskit.losses._distance import (
    HausdorffDTLoss,
    HausdorffERLoss,
)
from losskit.losses._elementwise import wait_for_compiled_kernels
from losskit.losses._imbalance import class_counts, class_weights, pos_weight
from losskit.losses._large_vocab import LinearCrossEntropyLoss
from losskit.losses._lovasz import LovaszHingeLoss, LovaszSoftmaxLoss
from losskit.losses._mcc import MCCLoss
from losskit.losses._regression import CharbonnierLoss, LogCoshLoss, PoissonLoss, QuantileLoss
from losskit.losses._robust import (
    AdaptiveRobustLoss,
    BarronLoss,
    CauchyLoss,
    GemanMcClureLoss,
    WelschLoss,
)
from losskit.losses._segmentation import (
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    TverskyLoss,
)
from losskit.losses._smoothness import TotalVariationLoss
from losskit.losses._ssim import (
    MSSSIMLoss,
    SSIMLoss,
)
from losskit.losses._torch_nn import contract_of
from losskit.losses.contracts import Check, Contract
from losskit.losses.registry import (
    LOSSES,
    LossSpec,
    available,
    get,
    register,
    resolve,
    unregister,
)

__all__ = [
    "LOSSES",
    "AdaptiveRobustLoss",
    "AsymmetricLoss",
    "BarronLoss",
    "CauchyLoss",
    "CharbonnierLoss",
    "Check",
    "ClipLoss",
    "Contract",
    "DiceLoss",
    "DistillationKLLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "GemanMcClureLoss",
    "GeneralizedDiceLoss",
    "HausdorffDTLoss",
    "HausdorffERLoss",
    "HingeLoss",
    "InfoNCELoss",
    "JaccardLoss",
    "LinearCrossEntropyLoss",
    "LogCoshLoss",
    "LossSpec",
    "LovaszHingeLoss",
    "LovaszSoftmaxLoss",
    "MCCLoss",
    "MSSSIMLoss",
    "MulticlassHingeLoss",
    "MulticlassSquaredHingeLoss",
    "PoissonLoss",
    "QuantileLoss",
    "SSIMLoss",
    "SoftClDiceLoss",
    "SoftTargetCrossEntropyLoss",
    "SoftmaxFocalLoss",
    "SquaredHingeLoss",
    "SupervisedContrastiveLoss",
    "TotalVariationLoss",
    "TverskyLoss",
    "WelschLoss",
    "ZLoss",
    "available",
    "class_counts",
    "class_weights",
    "contract_of",
    "get",
    "pos_weight",
    "register",
    "resolve",
    "unregister",
    "wait_for_compiled_kernels",
]
