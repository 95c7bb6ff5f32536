"""The training engine: the Trainer and crash-safe checkpoints."""

from losskit.engine._checkpoint import load_checkpoint, save_checkpoint
from losskit.engine._trainer import FitSummary, Trainer, seed_everything

__all__ = ["FitSummary", "Trainer", "load_checkpoint", "save_checkpoint", "seed_everything"]
