"""Input contracts: what each catalogue loss expects, checked with errors a user can act on.

A :class:`Contract` names the kind of input (logits, probabilities, log-probabilities, values),
the kind of target (class indices, one-hot, binary, continuous, probabilities, signs), how their
shapes relate and so their dtypes. Shape and dtype checks read metadata only and run on every
call; checks of values (range, finiteness, class indices) need a host sync and run on the first
calls only unless ``check="always"`` (``check="off"`` skips them).

What every catalogue loss does where torch would give NaN or an obscure error:

- an empty batch (an input with no elements) is refused with a :class:`LossInputError` saying
  the batch is empty: a mean over nothing has no value, and torch gives NaN, 0 or a reshape
  error depending on the loss; skip the step (a term that a batch may lack is
  ``Term(..., optional=True)``);
- a batch whose every target is ``ignore_index`` gives 0 with a zero gradient (torch's
  ``cross_entropy`` gives NaN), so a padding-only micro-batch does not poison training;
- an input and target on different devices, and meta tensors (no data), are refused naming the
  devices; a 0-dim target is refused naming the shape expected.

Under a :class:`~losskit.Term` these errors start with the term's key.

Example::

    >>> import torch
    >>> from losskit import losses
    >>> mse = losses.get("mse")
    >>> mse(torch.zeros(8), torch.zeros(8, 1))
    Traceback (most recent call last):
    ...
    losskit.errors.LossInputError: MSELoss ('mse'): target has shape (8, 1) and input (8,): \
the loss would broadcast them to (8, 8); give both the same shape (e.g. target.squeeze(1))
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

import torch
from torch import Tensor

from losskit._checks import Check, check_mode
from losskit._signature import renamed_message
from losskit.errors import ConfigError, LossInputError

__all__ = [
    "Check",
    "Contract",
    "ContractedLoss",
    "InputKind",
    "NonFiniteInputs",
    "ShapeRelation",
    "TargetKind",
    "as_float_target",
]

InputKind: TypeAlias = Literal[
    "logits", "probabilities", "log_probabilities", "values", "non_negative"
]
TargetKind: TypeAlias = Literal[
    "class_indices",
    "class_indices_or_probabilities",
    "one_hot",
    "binary",
    "hard_binary",
    "continuous",
    "non_negative",
    "probabilities",
    "log_probabilities",
    "sign",
    "logits",
    "any",
]
ShapeRelation: TypeAlias = Literal["same", "class_dim", "any"]
NonFiniteInputs: TypeAlias = Literal["raise", "allow"]
"""What the value checks do with NaN or infinite inputs and targets: refuse them (``"raise"``) or
leave them to the caller (``"allow"``), which reports the non-finite loss itself."""

FIRST_CALLS = 3
"""How many calls ``check="first"`` inspects values on."""

_SUM_TOLERANCE = 1e-3
_BINARY_KINDS = ("binary", "hard_binary")


def _shape(t: Tensor | torch.Size | Sequence[int]) -> str:
    dims = tuple(t.shape) if isinstance(t, Tensor) else tuple(t)
    return str(dims) if len(dims) != 1 else f"({dims[0]},)"


def _dtype(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Contract:
    """What a loss expects of its input and target.

    Args:
        input: ``"logits"`` (raw scores), ``"probabilities"`` (in [0, 1]),
            ``"log_probabilities"`` (<= 0), ``"values"`` (any real numbers) or
            ``"non_negative"`` (>= 0, e.g. rates).
        target: the kind of target; ``"class_indices_or_probabilities"`` accepts integer class
            indices of the ``class_dim`` shape or a float distribution of the input's shape;
            ``"binary"`` is a float in [0, 1] (soft labels allowed), ``"hard_binary"`` exactly 0
            or 1; both also take integer or bool 0/1 targets, which the loss casts to the input's
            dtype (as kornia does), and refuse any other integer value; ``"logits"`` are raw
            scores over classes (a teacher's), checked not to be probabilities;
            ``"non_negative"`` are floats >= 0 (e.g. counts).
        shape: ``"same"`` (input and target identical shapes, never broadcast),
            ``"class_dim"`` (input ``(N, C, *S)``, target ``(N, *S)``), or ``"any"``.
        class_dim: the class dimension of the input for ``"class_dim"`` and class-wise checks.
    """

    input: InputKind
    target: TargetKind
    shape: ShapeRelation
    class_dim: int = 1

    def check_metadata(self, name: str, input: Tensor, target: Tensor | None) -> None:
        """Shape, dtype and device checks: metadata only, no host sync, always on."""
        check_placement(name, input, target)
        if not input.is_floating_point():
            raise LossInputError(
                f"{name}: input has dtype {_dtype(input)}, expected a floating-point tensor of "
                f"{self.input.replace('_', '-')}; cast it with input.float()"
            )
        if target is None:
            return
        if self.target == "any":
            if target.ndim == 0 and input.ndim > 1:
                raise LossInputError(
                    f"{name}: target has shape (), expected one per sample, "
                    f"({input.shape[0]}, ...) for input {_shape(input)}"
                )
            return
        if self.target in ("class_indices", "class_indices_or_probabilities"):
            if (
                self.target == "class_indices_or_probabilities"
                and target.is_floating_point()
                and target.shape == input.shape
            ):
                return  # a distribution over classes per sample
            if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
                hint = (
                    " or a float distribution of the input's shape"
                    if self.target == "class_indices_or_probabilities"
                    else ""
                )
                raise LossInputError(
                    f"{name}: target has dtype {_dtype(target)}, expected integer class indices "
                    f"(int64){hint}; cast with target.long()"
                )
            self._check_class_dim_shape(name, input, target)
            return
        # Integer and bool 0/1 targets are accepted where the target is binary; the loss casts.
        integer_binary = self.target in _BINARY_KINDS and not target.is_complex()
        if not target.is_floating_point() and not integer_binary:
            raise LossInputError(
                f"{name}: target has dtype {_dtype(target)}, expected a floating-point tensor of "
                f"{self.target.replace('_', ' ')} values; cast with target.to(input.dtype)"
            )
        if self.shape in ("same", "class_dim") and target.shape != input.shape:
            try:
                joint = torch.broadcast_shapes(target.shape, input.shape)  # type: ignore[no-untyped-call]
            except RuntimeError:
                hint = "give both the same shape"
            else:
                hint = f"the loss would broadcast them to {_shape(joint)}; give both the same shape"
                squeeze = [
                    d for d, n in enumerate(target.shape) if n == 1 and target.ndim > input.ndim
                ]
                if squeeze and target.squeeze(squeeze[-1]).shape == input.shape:
                    hint += f" (e.g. target.squeeze({squeeze[-1]}))"
                elif target.ndim + 1 == input.ndim and target.unsqueeze(1).shape == input.shape:
                    hint += " (e.g. target.unsqueeze(1))"
            raise LossInputError(
                f"{name}: target has shape {_shape(target)} and input {_shape(input)}: {hint}"
            )

    def _check_class_dim_shape(self, name: str, input: Tensor, target: Tensor) -> None:
        if input.ndim == target.ndim + 1 and (
            input.ndim == 1
            or (
                input.shape[:1] == target.shape[:1]
                and input.shape[self.class_dim + 1 :] == target.shape[self.class_dim :]
            )
        ):
            return
        expected = (
            f"{_shape(input.shape[:1] + input.shape[self.class_dim + 1 :])}"
            if input.ndim > 1
            else "()"
        )
        hint = ""
        if target.shape == input.shape:
            hint = "; it has the input's shape: is it one-hot? use target.argmax(1)"
        elif target.ndim == input.ndim and target.shape[self.class_dim] == 1:
            hint = f"; drop the singleton class dim with target.squeeze({self.class_dim})"
        raise LossInputError(
            f"{name}: target has shape {_shape(target)}, expected {expected} for input "
            f"{_shape(input)} (N, C, ...) with class indices{hint}"
        )

    def check_values(
        self,
        name: str,
        input: Tensor,
        target: Tensor | None,
        *,
        ignore_index: int | None = None,
        nonfinite: NonFiniteInputs = "raise",
    ) -> None:
        """Value checks (finiteness, ranges, class indices): one host sync.

        With ``nonfinite="allow"`` a non-finite input or target is not refused, and its range
        is not judged (NaN has none): a caller that handles non-finite values itself (a
        :class:`~losskit.Criterion` with ``nonfinite="warn"`` or ``"skip"``) reports it.
        """
        finite = _finite(name, "input", input, nonfinite)
        x = input.detach()
        classes = x.shape[self.class_dim] if x.ndim > self.class_dim else None
        if not finite:
            pass  # no range to judge: the caller reports the non-finite values
        elif self.input == "probabilities" and x.numel():
            low, high = float(x.min()), float(x.max())
            if low < 0.0 or high > 1.0:
                raise LossInputError(
                    f"{name}: input values lie in [{low:.4g}, {high:.4g}], expected "
                    "probabilities in [0, 1]; for raw logits use the *_with_logits loss"
                )
        elif self.input == "log_probabilities" and x.numel():
            high = float(x.max())
            if high > 1e-6:
                raise LossInputError(
                    f"{name}: input has values up to {high:.4g}, expected log-probabilities "
                    "(<= 0); apply log_softmax (or log_sigmoid) to the logits"
                )
        elif self.input == "logits" and x.numel():
            self._check_not_probabilities(name, x, classes)
        elif self.input == "non_negative" and x.numel() and float(x.min()) < 0.0:
            raise LossInputError(
                f"{name}: input has values down to {float(x.min()):.4g}, expected non-negative "
                "values (rates); for log-rates pass log_input=True"
            )
        if target is None or self.target == "any":
            return
        y = target.detach()
        if y.is_floating_point() and not _finite(name, "target", y, nonfinite):
            return
        if y.numel() == 0:
            return
        kind = self.target
        if kind in _BINARY_KINDS and not y.is_floating_point():
            _check_integer_binary(name, y, ignore_index)
            return
        if kind == "class_indices_or_probabilities":
            kind = "probabilities" if y.is_floating_point() else "class_indices"
        if kind == "class_indices":
            n_classes = classes if classes is not None else x.shape[0]
            valid = y if ignore_index is None else y[y != ignore_index]
            if valid.numel():
                low, high = int(valid.min()), int(valid.max())
                if low < 0 or high >= n_classes:
                    bad = high if high >= n_classes else low
                    extra = (
                        f" (ignore_index={ignore_index} is excluded)"
                        if ignore_index is not None
                        else f"; if {bad} marks pixels to leave out, pass ignore_index={bad}"
                    )
                    raise LossInputError(
                        f"{name}: class index {bad} out of range for {n_classes} classes "
                        f"(input has {n_classes} along dim {self.class_dim}){extra}"
                    )
        elif kind in ("binary", "probabilities", "one_hot"):
            if kind == "binary" and ignore_index is not None:
                # Binary targets may mark elements to leave out (e.g. 255), as class indices do.
                y = y[y != ignore_index]
                if y.numel() == 0:
                    return
            low, high = float(y.min()), float(y.max())
            if low < 0.0 or high > 1.0:
                raise LossInputError(
                    f"{name}: target values lie in [{low:.4g}, {high:.4g}], expected "
                    f"{kind.replace('_', '-')} targets in [0, 1]"
                )
            if kind in ("probabilities", "one_hot") and y.ndim > self.class_dim:
                sums = y.sum(self.class_dim)
                if not bool(((sums - 1).abs() <= _SUM_TOLERANCE).all()):
                    raise LossInputError(
                        f"{name}: target does not sum to 1 along dim {self.class_dim} (sums lie "
                        f"in [{float(sums.min()):.4g}, {float(sums.max()):.4g}]), expected a "
                        "distribution over classes"
                    )
        elif kind == "sign":
            if not bool(((y == 1) | (y == -1)).all()):
                raise LossInputError(
                    f"{name}: target values must be -1 or 1, got values in "
                    f"[{float(y.min()):.4g}, {float(y.max()):.4g}]; map 0/1 labels with 2 * y - 1"
                )
        elif kind == "hard_binary":
            if not bool(((y == 0) | (y == 1)).all()):
                low, high = float(y.min()), float(y.max())
                hint = "; map -1/1 labels with (y + 1) / 2" if low == -1.0 and high <= 1.0 else ""
                raise LossInputError(
                    f"{name}: target values must be exactly 0 or 1, got values in "
                    f"[{low:.4g}, {high:.4g}]{hint}"
                )
        elif kind == "non_negative" and float(y.min()) < 0.0:
            raise LossInputError(
                f"{name}: target has values down to {float(y.min()):.4g}, expected non-negative "
                "values (counts)"
            )
        elif kind == "logits":
            self._check_not_probabilities(name, y, classes, role="target")
        elif kind == "log_probabilities" and float(y.max()) > 1e-6:
            raise LossInputError(
                f"{name}: target has values up to {float(y.max()):.4g}, expected "
                "log-probabilities (<= 0); pass log_target=False for probabilities"
            )

    def _check_not_probabilities(
        self, name: str, x: Tensor, classes: int | None, role: str = "input"
    ) -> None:
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            return
        # Scores over classes along class_dim: a softmax output sums to 1 there.
        over_classes = self.shape == "class_dim" or self.target in ("probabilities", "logits")
        what = "inputs look" if role == "input" else f"{role} looks"
        if over_classes and classes is not None and classes > 1:
            sums = x.sum(self.class_dim)
            if bool(((sums - 1).abs() <= _SUM_TOLERANCE).all()):
                raise LossInputError(
                    f"{name}: {what} like probabilities (all in [0, 1], rows sum to 1 along "
                    f"dim {self.class_dim}): this loss expects raw logits; drop the softmax"
                )
        elif not over_classes and x.numel() >= 16 and _spread_like_probabilities(x, low, high):
            raise LossInputError(
                f"{name}: {what} like probabilities (all {x.numel()} values in [0, 1]): "
                "this loss expects raw logits; drop the sigmoid (check='off' if they really "
                "are logits: Term(..., check='off'), or the loss's own check='off')"
            )


def _spread_like_probabilities(x: Tensor, low: float, high: float) -> bool:
    """Values in [0, 1] that look like sigmoid outputs rather than raw logits: spread over a
    quarter of the interval or more, or gathered around 0.5 (an untrained head's sigmoid). An
    untrained head's raw logits sit near 0, all positive now and then (0.02 to 0.19 was a real
    first batch): those are left alone."""
    return high - low >= 0.25 or abs(float(x.mean()) - 0.5) < 0.25


def _check_integer_binary(name: str, y: Tensor, ignore_index: int | None) -> None:
    """Integer (or bool) binary targets hold 0 and 1 only (``ignore_index`` aside)."""
    if ignore_index is not None:
        y = y[y != ignore_index]
    if y.numel() == 0 or bool(((y == 0) | (y == 1)).all()):
        return
    low, high = int(y.min()), int(y.max())
    raise LossInputError(
        f"{name}: target has dtype {_dtype(y)} with values in [{low}, {high}], expected binary "
        "targets 0 or 1 (integers are cast to the input's dtype); class indices belong to a "
        "multi-class loss (mode='multiclass', softmax_focal, cross_entropy)"
        + (f"; if {high} marks elements to leave out, pass ignore_index={high}" if high > 1 else "")
    )


def as_float_target(target: Tensor, input: Tensor) -> Tensor:
    """An integer or bool binary ``target`` cast to the input's dtype; floats as given.

    Example::

        >>> as_float_target(torch.tensor([0, 1]), torch.zeros(2, dtype=torch.float64))
        tensor([0., 1.], dtype=torch.float64)
    """
    if target.is_floating_point():
        return target
    return target.to(input.dtype)


def _refusing_renamed(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that refuses a peer's option name with the equivalent the class declares."""
    names = set(inspect.signature(init).parameters)

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        renamed: Mapping[str, str] = type(self).renamed_options
        for key in kwargs:
            if key in renamed and key not in names:
                where = f"{type(self).__name__}: "
                raise ConfigError(renamed_message(key, renamed[key], where=where))
        init(self, *args, **kwargs)

    return checked


def check_placement(name: str, input: Tensor, target: Tensor | None) -> None:
    """Refuse tensors on two devices, meta tensors and an empty batch."""
    if target is not None and target.device != input.device:
        raise LossInputError(
            f"{name}: input is on device {input.device} but target on {target.device}; "
            f"move the target with target.to({str(input.device)!r})"
        )
    if input.is_meta:
        raise LossInputError(
            f"{name}: input is on the meta device (shapes, no data), so there is no value "
            "to compute; materialise the model first (e.g. module.to_empty(device=...))"
        )
    if input.numel() == 0:
        raise LossInputError(
            f"{name}: input has shape {_shape(input)}: the batch is empty, and a loss over "
            "nothing has no value; skip empty batches (or make the term optional=True and "
            "leave it out of such a batch)"
        )


def _finite(name: str, role: str, t: Tensor, nonfinite: NonFiniteInputs) -> bool:
    """Whether ``t`` holds only finite values; a LossInputError if not, unless allowed."""
    if not t.is_floating_point():
        return True
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        if nonfinite == "allow":
            return False
        nan = int(torch.isnan(t).sum())
        inf = t.numel() - int(finite.sum()) - nan
        raise LossInputError(
            f"{name}: {role} has {nan} NaN and {inf} infinite values (of {t.numel()}, shape "
            f"{_shape(t)}); the loss would be non-finite"
        )
    return True


@dataclass
class _CheckState:
    mode: Check
    calls: int = 0
    passed: tuple[object, ...] = ()  # the last shapes and dtypes that passed check_metadata
    settled: bool = False  # values are no longer checked: only a new signature needs a look
    nonfinite: NonFiniteInputs = "raise"

    def __post_init__(self) -> None:
        self.settled = self.mode == "off"


class ContractedLoss:
    """Mixin for loss modules with a :class:`Contract`: call :meth:`check_inputs` in forward.

    Subclasses set the class attributes ``contract`` and ``loss_name`` and call
    :meth:`_init_check` in ``__init__``. Value checks are skipped while ``torch.compile`` traces
    (they would force a graph break).
    """

    contract: ClassVar[Contract]
    loss_name: ClassVar[str]
    renamed_options: ClassVar[Mapping[str, str]] = {}
    """Option names of peer libraries (MONAI, kornia, smp) that this loss spells differently,
    each with what to pass instead: the constructor, ``losses.get`` and config files refuse
    them with that text rather than with an unknown-argument error."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _refusing_renamed(init)  # type: ignore[method-assign]

    def _init_check(self, check: Check) -> None:
        check = check_mode(check)
        # In the instance dict: nn.Module.__setattr__ is slow and this is read on every call.
        self.__dict__["_check_state"] = _CheckState(check)

    @property
    def check(self) -> Check:
        """When values are checked: ``"first"`` calls, ``"always"`` or ``"off"``."""
        state: _CheckState = self.__dict__["_check_state"]
        return state.mode

    @property
    def nonfinite_inputs(self) -> NonFiniteInputs:
        """Whether the value checks refuse non-finite inputs and targets (``"raise"``, the
        default) or ``"allow"`` them, leaving the report to the caller.

        A :class:`~losskit.Criterion` with ``nonfinite="warn"`` or ``"skip"`` (and checks on)
        sets ``"allow"`` on the losses of its terms, so that its own policy decides from the
        first call; other value checks (class indices, ranges of finite tensors) still raise.

        Example::

            >>> import torch
            >>> from losskit import losses
            >>> mse = losses.get("mse")
            >>> mse.nonfinite_inputs = "allow"
            >>> mse(torch.tensor([float("nan")]), torch.zeros(1))
            tensor(nan)
        """
        state: _CheckState = self.__dict__["_check_state"]
        return state.nonfinite

    @nonfinite_inputs.setter
    def nonfinite_inputs(self, value: NonFiniteInputs) -> None:
        if value not in ("raise", "allow"):
            raise ConfigError(f"nonfinite_inputs must be 'raise' or 'allow', got {value!r}")
        state: _CheckState = self.__dict__["_check_state"]
        state.nonfinite = value

    @property
    def display_name(self) -> str:
        """How errors name this loss: ``ClassName ('registry_name')``."""
        return f"{type(self).__name__} ({self.loss_name!r})"

    def check_inputs(self, input: Tensor, target: Tensor | None = None, **context: Any) -> None:
        """Check ``input`` and ``target`` against the contract (values on the first calls)."""
        state: _CheckState = self.__dict__["_check_state"]
        # Shapes and dtypes that passed last time need no second look: the steady state of a
        # training loop (values no longer checked) costs one tuple comparison.
        if target is None:
            signature: tuple[object, ...] = (input.shape, input.dtype, input.device)
        else:
            signature = (input.shape, input.dtype, target.shape, target.dtype, target.device)
        if state.settled and signature == state.passed:
            return
        values = not state.settled
        if torch.compiler.is_compiling():
            self.contract.check_metadata(self.display_name, input, target)
            return
        if signature != state.passed:
            self.contract.check_metadata(self.display_name, input, target)
            state.passed = signature
        if values:
            state.calls += 1
            state.settled = state.mode == "first" and state.calls >= FIRST_CALLS
            self.contract.check_values(
                self.display_name, input, target, nonfinite=state.nonfinite, **context
            )
