"""Diagnostics: the loss doctor and per-key gradient health.

- :func:`diagnose` runs one forward and backward pass and reports every key (shapes, contract
  violations, shares, gradients, untrained parameters, conflicts) with advice;
  ``losskit doctor CONFIG.toml`` does the same from a run configuration.
- :func:`gradient_health` gives per-key gradient norms and gradient cosines as detached tensors
  for the Tracker, in any training loop; ``Trainer(diagnostics_every=N)`` logs them every N
  steps.
"""

from losskit._findings import Finding, Severity
from losskit.diagnostics._doctor import (
    Diagnosis,
    TensorSummary,
    TermReport,
    diagnose,
    diagnose_config,
)
from losskit.diagnostics._gradients import gradient_health, key_gradients

__all__ = [
    "Diagnosis",
    "Finding",
    "Severity",
    "TensorSummary",
    "TermReport",
    "diagnose",
    "diagnose_config",
    "gradient_health",
    "key_gradients",
]
