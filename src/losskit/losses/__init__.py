"""The loss catalogue: every loss by name, with one-line descriptions and families.

Example::

    >>> from losskit import losses
    >>> losses.get("bce_logits")
    BCEWithLogitsLoss()
"""

from losskit.losses import torch_nn as _torch_nn  # noqa: F401  (registers the torch.nn losses)
from losskit.losses.registry import LossSpec, available, get, register, resolve, unregister

__all__ = ["LossSpec", "available", "get", "register", "resolve", "unregister"]
