"""The loss catalogue: every loss by name, with one-line descriptions and families.

Importing this package registers every ``torch.nn`` loss and losskit's own families
(classification, large-vocabulary, regression, segmentation, Lovász).

Example::

    >>> from losskit import losses
    >>> losses.get("bce_logits")
    BCEWithLogitsLoss()
    >>> {"focal", "dice", "quantile", "lovasz_softmax"} <= {s.name for s in losses.available()}
    True
"""

# Each family module registers its losses on import.
from losskit.losses import classification as _classification  # noqa: F401
from losskit.losses import large_vocab as _large_vocab  # noqa: F401
from losskit.losses import lovasz as _lovasz  # noqa: F401
from losskit.losses import regression as _regression  # noqa: F401
from losskit.losses import segmentation as _segmentation  # noqa: F401
from losskit.losses import torch_nn as _torch_nn  # noqa: F401
from losskit.losses.contracts import Contract
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
    "Contract",
    "LossSpec",
    "available",
    "get",
    "register",
    "resolve",
    "unregister",
]
