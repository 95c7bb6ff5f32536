"""The exceptions and warnings losskit raises.

Every error says what was expected, what came, and what to do; every class here derives from
:class:`LossKitError` so that callers can catch losskit's errors as one family.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "LogFormatError",
    "LogNotFoundError",
    "LossInputError",
    "LossKitError",
    "LossKitWarning",
    "MissingDependencyError",
    "NonFiniteLossError",
    "RankMismatchError",
    "RunInUseError",
    "TermError",
    "UnknownNameError",
]


class LossKitError(Exception):
    """Base class of every error raised by losskit."""


class ConfigError(LossKitError, ValueError):
    """A criterion, term, schedule or config file was set up with values that cannot work."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed from: missing, damaged, foreign or carrying code.

    The message names the file, what is wrong with it and what to do instead.
    """


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry holds (a loss, balancer, schedule, optimizer, ...).

    A :class:`ConfigError` for callers of losskit and a :class:`KeyError` for code that looks
    names up like keys; the message names the registry and the closest known names.
    """

    def __str__(self) -> str:
        # KeyError would quote the message; show it as written.
        return BaseException.__str__(self)


class LossInputError(LossKitError, ValueError):
    """A loss received inputs or targets that break its contract (shape, dtype, range, key)."""


class TermError(LossKitError):
    """An exception raised inside one term (a selector or the loss), re-raised naming the term.

    Never raised as such: the exception a term raised is re-raised as an instance of a subclass
    of both its own type and this class (``KeyError`` stays a ``KeyError``), with the original as
    ``__cause__``; a type that cannot be rebuilt that way (``UnicodeError``, exception groups)
    becomes a :class:`LossInputError` that is also a ``TermError``.

    Attributes:
        key: the term's key.
        doing: what the term was doing: ``"selecting input"``, ``"selecting target"``, ...,
            ``"calling the loss"``.

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"head": lk.Term("mse", input=lambda o, b: o["nope"])})
        >>> try:
        ...     crit({"p": torch.zeros(2)}, torch.zeros(2))
        ... except KeyError as exc:
        ...     print(exc.key, "|", exc.doing, "|", repr(exc.__cause__))
        head | selecting input | KeyError('nope')
    """

    key: str
    doing: str


class NonFiniteLossError(LossKitError, FloatingPointError):
    """One or more loss terms produced NaN or infinity; the message names the keys."""


class MissingDependencyError(LossKitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class LogFormatError(LossKitError, ValueError):
    """A metrics log holds a line that is not a record; the message names the file and line."""


class LogNotFoundError(LossKitError, FileNotFoundError):
    """A run directory holds no metrics log to read."""


class RankMismatchError(LossKitError, RuntimeError):
    """Distributed processes logged different keys or splits, so their values cannot be reduced."""


class RunInUseError(LossKitError, RuntimeError):
    """A run folder is being written by another process (its ``.lock`` is held); the message
    names that process."""


class LossKitWarning(UserWarning):
    """Warnings from losskit (non-finite terms under ``nonfinite="warn"``, fallbacks)."""
