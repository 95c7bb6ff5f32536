"""Balancing keyed loss terms: static, magnitude-normalised, adaptive and gradient-level.

Pick one by name in a :class:`~losskit.Criterion` (``balancer="magnitude"``, ``balancer="upgrad"``
with options as a table ``{"name": "upgrad", "shared": model.trunk}``) or pass an instance. Every
balancer reports the weight each key had (``res.weights``, logged as ``weight/<key>``) and keeps
its state in the criterion's ``state_dict()``. See ``docs/balancing.md`` for when to use which.

Example::

    >>> import torch, losskit as lk
    >>> crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer="magnitude")
    >>> sorted(crit(torch.zeros(3), torch.full((3,), 4.0)).log())
    ['loss', 'loss/a', 'loss/b', 'weight/a', 'weight/b']
    >>> "upgrad" in lk.balancers.available()
    True
"""

from losskit.balancers._advice import BalancerAdvice, Measured, advise
from losskit.balancers._gradient import Gradient
from losskit.balancers._gradnorm import GradNorm
from losskit.balancers._magnitude import Magnitude
from losskit.balancers._protocol import (
    AbsenceAwareBalancer,
    Balancer,
    BalancerBase,
    BalancingError,
    Capabilities,
    GradientBalancer,
    StepLearningBalancer,
    SynchronizedBalancer,
    capabilities,
)
from losskit.balancers._registry import (
    BALANCERS,
    BalancerSpec,
    GradientMethod,
    available,
    check_name,
    create,
    from_config,
    register,
)
from losskit.balancers._scalarizers import (
    DWA,
    FAMO,
    IMTLL,
    STCH,
    GeometricMean,
    RandomWeights,
    Uncertainty,
)
from losskit.balancers._shared import Shared
from losskit.balancers._static import Mean, Sum

__all__ = [
    "BALANCERS",
    "DWA",
    "FAMO",
    "IMTLL",
    "STCH",
    "AbsenceAwareBalancer",
    "Balancer",
    "BalancerAdvice",
    "BalancerBase",
    "BalancerSpec",
    "BalancingError",
    "Capabilities",
    "GeometricMean",
    "GradNorm",
    "Gradient",
    "GradientBalancer",
    "GradientMethod",
    "Magnitude",
    "Mean",
    "Measured",
    "RandomWeights",
    "Shared",
    "StepLearningBalancer",
    "Sum",
    "SynchronizedBalancer",
    "Uncertainty",
    "advise",
    "available",
    "capabilities",
    "check_name",
    "create",
    "from_config",
    "register",
]
