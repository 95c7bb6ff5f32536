"""One keyed loss term: which loss, what it reads, and how much it weighs.

Example::

    >>> import torch
    >>> import losskit as lk
    >>> term = lk.Term("mse", input="pred", target="y", weight=0.5)
    >>> value = term.compute("reg", {"pred": torch.zeros(4)}, {"y": torch.ones(4)})
    >>> value
    tensor(1.)
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import torch
from torch import Tensor, nn

from losskit import losses
from losskit._keyed import keyed
from losskit.errors import ConfigError, LossInputError, TermError
from losskit.losses.contracts import FIRST_CALLS, ContractedLoss
from losskit.result import Count
from losskit.schedules import Constant, Schedule

__all__ = ["Selector", "Term", "WeightLike"]

Selector: TypeAlias = str | int | Callable[[Any, Any], Tensor]
"""Where a term finds a tensor: a key, a position, or ``fn(outputs, batch) -> Tensor``."""

WeightLike: TypeAlias = float | int | Schedule
"""A fixed weight or a :class:`~losskit.schedules.Schedule` of the optimizer step."""


def _masked_out(tensor: Any, kept: list[Tensor], fill: float) -> Any:
    """``tensor`` with what the masks leave out made harmless: a non-finite float there becomes
    ``fill`` and an integer (a class index, possibly garbage) becomes ``fill`` (through
    ``where``, so no NaN reaches the value checks, the loss or its gradient; the reduction gives
    the masked-out entries weight 0). A mask lines up with the tensor when it has its shape, its
    leading (sample) dimension, or its shape without the class dimension 1; a tensor it does not
    line up with is left as it is."""
    if not isinstance(tensor, Tensor):
        return tensor
    floating = tensor.is_floating_point() or tensor.is_complex()
    for mask in kept:
        shape = tensor.shape
        if mask.shape == shape:
            aligned = mask
        elif mask.ndim == 1 and shape[:1] == mask.shape:
            aligned = mask.reshape(mask.shape + (1,) * (tensor.ndim - 1))
        elif tensor.ndim == mask.ndim + 1 and shape[:1] + shape[2:] == mask.shape:
            aligned = mask.unsqueeze(1)
        else:
            continue
        keep = (aligned | torch.isfinite(tensor)) if floating else aligned
        tensor = torch.where(keep, tensor, torch.full((), fill, dtype=tensor.dtype))
    return tensor


def _valid_count(target: Tensor, ignore_index: int, loss: object) -> Tensor:
    """The denominator of a mean over the targets that are not ``ignore_index``: their number,
    or the sum of their class weights (the loss's ``weight``)."""
    valid = target != ignore_index
    class_weight = getattr(loss, "weight", None)
    if not isinstance(class_weight, Tensor):
        return valid.sum().to(torch.float32)
    weights = class_weight[torch.where(valid, target, 0)]
    return torch.where(valid, weights, 0).sum().to(torch.float32)


def _describe(container: Any) -> str:
    if isinstance(container, Mapping):
        return f"a mapping with keys {sorted(map(str, container.keys()))}"
    if isinstance(container, Sequence) and not isinstance(container, (str, bytes)):
        return f"a {type(container).__name__} of length {len(container)}"
    if isinstance(container, Tensor):
        return f"a tensor of shape {tuple(container.shape)}"
    if container is None:
        return "nothing (None)"
    return f"a {type(container).__name__}"


_SELECTOR_HINT = (
    " (a callable selector is called as fn(outputs, batch); for a term that a batch may lack, "
    "make it optional=True and return None)"
)


def _selecting(exc: Exception, key: str, role: str, selector: Selector) -> TermError:
    err = keyed(exc, key, f"selecting {role}")
    if callable(selector) and isinstance(exc, LookupError) and err.args:
        err.args = (err.args[0] + _SELECTOR_HINT,)
    return err


def _pick(key: str, role: str, selector: Selector, where: str, source: Any, other: Any) -> Tensor:
    """Select ``role`` (input, target, mask, ...) for term ``key`` from ``source``."""
    found: Any
    if callable(selector):
        outputs, batch = (source, other) if where == "outputs" else (other, source)
        try:
            found = selector(outputs, batch)
        except Exception as exc:
            raise _selecting(exc, key, role, selector) from exc
    elif isinstance(selector, str):
        if not isinstance(source, Mapping):
            raise LossInputError(
                f"term {key!r}: {role} selects key {selector!r} from the {where}, but the "
                f"{where} are {_describe(source)}; pass a mapping or select by position/callable"
            )
        if selector not in source:
            elsewhere = isinstance(other, Mapping) and selector in other
            other_name = "batch" if where == "outputs" else "outputs"
            hint = (
                f"; {selector!r} is in the {other_name}: select it with a callable such as "
                f"`lambda outputs, batch: {other_name}[{selector!r}]`"
                if elsewhere
                else ""
            )
            raise LossInputError(
                f"term {key!r}: {role} key {selector!r} not found in the {where}, which hold "
                f"keys {sorted(map(str, source.keys()))}{hint}"
            )
        try:
            found = source[selector]
        except Exception as exc:  # a user mapping's __getitem__
            raise _selecting(exc, key, role, selector) from exc
    else:
        if not isinstance(source, Sequence) or isinstance(source, (str, bytes)):
            raise LossInputError(
                f"term {key!r}: {role} selects position {selector} from the {where}, but the "
                f"{where} are {_describe(source)}"
            )
        if not -len(source) <= selector < len(source):
            raise LossInputError(
                f"term {key!r}: {role} position {selector} is out of range for the {where}, "
                f"{_describe(source)}"
            )
        try:
            found = source[selector]
        except Exception as exc:  # a user sequence's __getitem__
            raise _selecting(exc, key, role, selector) from exc
    if not isinstance(found, Tensor):
        raise LossInputError(
            f"term {key!r}: {role} selected by {selector!r} is a {type(found).__name__}, "
            "expected a torch.Tensor"
        )
    return found


def _as_schedule(weight: WeightLike) -> Schedule:
    if isinstance(weight, (Tensor, list, tuple)):
        raise ConfigError(
            "a term weight must be a number or a schedule, got a "
            f"{type(weight).__name__}: class weights are the loss's own option, given as "
            "options={'weight': class_w} (the TOML's `options = { weight = [...] }`), e.g. "
            "Term('cross_entropy', input='logits', target='label', options={'weight': w})"
        )
    if isinstance(weight, bool):
        raise ConfigError(f"a term weight must be a number or a schedule, got {weight!r}")
    if isinstance(weight, (int, float)):
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(
                f"a term weight must be a finite number >= 0, got {weight!r}; to leave a term "
                "out of the total use weight=0 or Criterion.disable(key)"
            )
        return Constant(float(weight))
    if isinstance(weight, Schedule):
        return weight
    raise ConfigError(
        f"a term weight must be a number or a schedule (callable step -> float), "
        f"got {type(weight).__name__}"
    )


class Term(nn.Module):
    """A loss and the selectors that feed it, with a weight (fixed or scheduled).

    Args:
        loss: a catalogue name (``"cross_entropy"``), an ``nn.Module`` or any callable. With
            ``input`` (and ``target``) it is called as ``loss(input, target)``; without
            selectors as ``loss(outputs, batch)``.
        input: selects the prediction from the model outputs (key, position or callable); with a
            ``target`` but no ``input``, the outputs themselves are the input. A tuple of
            selectors feeds a loss of several inputs, called as ``loss(*inputs, target)``
            (e.g. ``input=("hidden", "weight")`` for ``"linear_cross_entropy"``).
        target: selects the target from the batch (key, position or callable).
        weight: a float or a :class:`~losskit.schedules.Schedule` of the optimizer step.
        mask: selects a boolean/0-1 tensor from the batch, per sample ``(N,)`` or per element
            (the unreduced loss's shape); masked-out entries do not count, and a batch with
            nothing selected gives 0, never NaN.
        sample_weight: selects per-sample or per-element weights from the batch.
        enabled: whether the term starts enabled (``Criterion.enable`` / ``disable`` change it).
        monitor: a monitor-only term: the criterion computes it without building a graph and
            logs it as ``loss/<key>`` (no ``weight/<key>``), but it never enters the total, its
            gradient, the weights or the balancer. It takes no weight.
        optional: the term is absent from a batch that lacks what it reads (a missing key in
            the outputs or the batch, a callable selector returning None): it contributes
            nothing and is reported in ``res.absent``, not as 0. A batch where it has nothing
            to average (an empty mask, every target ``ignore_index``) gives it the count 0 and
            the value 0 (never NaN), which means and balancers leave out.
        options: the catalogue loss's arguments, as the TOML's ``options = {...}``: the one
            home for a loss option whose name a term argument takes too, such as
            cross-entropy's class ``weight`` (``options={"weight": class_w}``).
        **loss_kwargs: further arguments for the catalogue loss when ``loss`` is a name
            (``Term("focal", gamma=2.0)``); they join ``options``, and a name given in both is
            refused.

    With ``mask`` or ``sample_weight`` the loss is computed unreduced and reduced here as
    ``sum(w * loss) / sum(w)``, so the loss must accept ``reduction="none"``.

    :meth:`measure` also reports what the value averages (``res.counts``): ``sum(w)`` under a
    mask or sample weights, the targets that are not ``ignore_index`` (weighted by the class
    weights) for a loss that has one and reduces by ``"mean"``; nothing for other terms, which
    a mean over batches weighs by the batch.

    Example::

        >>> import torch
        >>> term = Term("cross_entropy", input="logits", target="label", mask="valid")
        >>> out = {"logits": torch.zeros(3, 5)}
        >>> batch = {"label": torch.tensor([0, 1, 2]), "valid": torch.tensor([True, True, False])}
        >>> term.compute("cls", out, batch)
        tensor(1.6094)

    Class weights of a loss go in ``options`` (the term's own ``weight`` scales the term)::

        >>> w = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0])
        >>> term = Term("cross_entropy", input="logits", target="label", options={"weight": w})
        >>> term.compute("cls", out, batch)
        tensor(1.6094)
    """

    _loss_fn: Callable[..., Tensor]  # the loss, read without nn.Module.__getattr__

    def __init__(
        self,
        loss: str | nn.Module | Callable[..., Tensor],
        *,
        input: Selector | tuple[Selector, ...] | None = None,
        target: Selector | None = None,
        weight: WeightLike = 1.0,
        mask: Selector | None = None,
        sample_weight: Selector | None = None,
        enabled: bool = True,
        monitor: bool = False,
        optional: bool = False,
        options: Mapping[str, Any] | None = None,
        **loss_kwargs: Any,
    ) -> None:
        super().__init__()
        if options is not None:
            if not isinstance(options, Mapping):
                raise ConfigError(
                    f"options must be a mapping of the loss's arguments (options={{'weight': "
                    f"class_w}}), got {type(options).__name__}"
                )
            twice = sorted(set(options) & set(loss_kwargs))
            if twice:
                raise ConfigError(
                    f"loss arguments {twice} given both in options= and as keywords; give each once"
                )
            loss_kwargs = {**options, **loss_kwargs}
        if monitor and not (isinstance(weight, (int, float)) and weight == 1.0):
            raise ConfigError(
                f"a monitor-only term takes no weight (it never enters the total), got "
                f"weight={weight!r}; drop the weight or monitor=True"
            )
        per_element = mask is not None or sample_weight is not None
        if isinstance(loss, str):
            if per_element:
                loss_kwargs = {**loss_kwargs, "reduction": "none"}
            loss = losses.get(loss, **loss_kwargs)
        elif loss_kwargs:
            raise ConfigError(
                f"loss arguments {sorted(loss_kwargs)} are only accepted with a catalogue name; "
                f"configure the {type(loss).__name__} itself"
            )
        elif per_element:
            if not hasattr(loss, "reduction"):
                raise ConfigError(
                    f"mask/sample_weight need a loss that can return unreduced values "
                    f"(reduction='none'); {type(loss).__name__} has no `reduction` attribute: "
                    "apply the mask inside the loss instead"
                )
            loss = copy.copy(loss)
            loss.reduction = "none"  # type: ignore[union-attr]
        if not callable(loss):
            raise ConfigError(f"a term's loss must be callable, got {type(loss).__name__}")
        if per_element and getattr(loss, "couples_samples", False):
            raise ConfigError(
                f"{type(loss).__name__} couples the samples of a batch (each one enters the "
                "others' terms, as a negative or a positive): a mask or sample weight cannot take "
                "a sample out of the others' terms; select the kept samples before the criterion "
                "(e.g. outputs[keep], labels[keep]) instead of mask=/sample_weight="
            )
        self.loss: Callable[..., Tensor] = loss
        self.input = input
        self.target = target
        self.mask = mask
        self.sample_weight = sample_weight
        self.weight: Schedule = _as_schedule(weight)
        self.enabled_at_start = enabled
        self.monitor = monitor
        self.optional = optional
        self._per_element = per_element
        # Calls left on which sample weights are checked for negative values (a host sync).
        self._weight_checks = FIRST_CALLS if sample_weight is not None else 0
        # The common term: one input and one target, each selected by key.
        self._by_key = isinstance(input, str) and isinstance(target, str)
        # A plain torch.nn loss (not the catalogue's checked one) is checked against the same
        # contract here: shapes, dtypes and devices, never broadcast.
        single = input is None or not isinstance(input, tuple)
        self._plain = losses.contract_of(loss) if single and target is not None else None
        self._plain_passed: tuple[object, ...] = ()
        ignore_index = getattr(loss, "ignore_index", None)
        counts_targets = (
            not per_element
            and isinstance(ignore_index, int)
            and getattr(loss, "reduction", None) == "mean"
        )
        self._ignore_index = ignore_index if counts_targets else None
        # Whether a batch with nothing to average already gives 0 (never NaN): the reduction
        # here clamps its denominator, and a catalogue loss's contract guarantees it for an
        # all-ignored batch; only another loss (torch's own gives NaN) needs the term's guard.
        self._zero_when_empty = per_element or isinstance(loss, ContractedLoss)

    @property
    def counted(self) -> bool:
        """Whether :meth:`measure` reports what the value averages: under a mask or sample
        weights, or for a mean that leaves out ``ignore_index`` targets (class indices)."""
        return self._per_element or self._ignore_index is not None

    def selected(self, key: str, outputs: Any, batch: Any) -> dict[str, Tensor]:
        """The tensors this term reads, by role (``input``, ``target``, ``mask``, ...)."""
        chosen: dict[str, Tensor] = {}
        if isinstance(self.input, tuple):
            for i, x in enumerate(self._inputs(key, outputs, batch)):
                chosen["input" if i == 0 else f"input[{i}]"] = x
        elif self.input is not None or self.target is not None:
            chosen["input"] = self._input(key, outputs, batch)
        for role, selector in (
            ("target", self.target),
            ("mask", self.mask),
            ("sample_weight", self.sample_weight),
        ):
            if selector is not None:
                chosen[role] = _pick(key, role, selector, "batch", batch, outputs)
        return chosen

    def _inputs(self, key: str, outputs: Any, batch: Any) -> tuple[Tensor, ...]:
        if isinstance(self.input, tuple):
            return tuple(
                _pick(key, f"input[{i}]", s, "outputs", outputs, batch)
                for i, s in enumerate(self.input)
            )
        return (self._input(key, outputs, batch),)

    def _input(self, key: str, outputs: Any, batch: Any) -> Tensor:
        if self.input is not None and not isinstance(self.input, tuple):
            return _pick(key, "input", self.input, "outputs", outputs, batch)
        if not isinstance(outputs, Tensor):
            raise LossInputError(
                f"term {key!r}: no input selector, so the input is the model output itself, but "
                f"the outputs are {_describe(outputs)}; give input= (a key, position or callable)"
            )
        return outputs

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "loss":
            # Also in the instance dict: a submodule is found through nn.Module.__getattr__ (a
            # Python call per read), and the term calls its loss every step.
            self.__dict__["_loss_fn"] = value

    def compute(self, key: str, outputs: Any, batch: Any) -> Tensor:
        """The unweighted value of this term (named ``key`` in errors) on one batch."""
        return self.measure(key, outputs, batch)[0]

    def measure(self, key: str, outputs: Any, batch: Any) -> tuple[Tensor, Count | None]:
        """The unweighted value of this term on one batch and what it averages (see
        :data:`Count`; None when the term does not say).

        Example::

            >>> import torch
            >>> term = Term("cross_entropy", input="x", target="y")
            >>> value, count = term.measure("cls", {"x": torch.zeros(3, 4)},
            ...                             {"y": torch.tensor([1, -100, 2])})
            >>> value, count()
            (tensor(1.3863), tensor(2.))
        """
        try:
            target = None
            if self._per_element:
                value, target = self._call(key, outputs, batch, protect=True)
            elif self._by_key:
                x = outputs.get(self.input) if type(outputs) is dict else None
                if type(x) is not Tensor:  # not found in a dict: the general selection's errors
                    x = _pick(key, "input", self.input, "outputs", outputs, batch)  # type: ignore[arg-type]
                target = batch.get(self.target) if type(batch) is dict else None
                if type(target) is not Tensor:
                    target = _pick(key, "target", self.target, "batch", batch, outputs)  # type: ignore[arg-type]
                if self._plain is not None:
                    self._check_plain(x, target)
                try:
                    value = self._loss_fn(x, target)
                except Exception as exc:
                    raise self._loss_failed(exc, key, (x, target)) from exc
            else:
                value, target = self._call(key, outputs, batch)
            count: Count | None = None
            if self._per_element:
                value, count = self._reduce(key, self._checked(key, value), outputs, batch)
            else:
                if not (type(value) is Tensor and value.ndim == 0 and value.is_floating_point()):
                    value = self._finish(key, value)
                if (
                    self._ignore_index is not None
                    and target is not None
                    and not target.is_floating_point()
                ):
                    count = functools.partial(
                        _valid_count, target, self._ignore_index, self._loss_fn
                    )
            if self.optional and count is not None:
                count = count() if callable(count) else count
                if not self._zero_when_empty:  # all-ignored: torch's mean is NaN
                    value = torch.where(count > 0, value, 0.0)
            return value, count
        except LossInputError as exc:
            if str(exc).startswith(f"term {key!r}"):
                raise
            raise LossInputError(f"term {key!r}: {exc}") from exc
        except TermError:
            raise
        except Exception as exc:  # outside the selectors and the loss: the reduction
            raise keyed(exc, key, "weighting and reducing the loss") from exc

    def present(self, outputs: Any, batch: Any, key: str = "?") -> bool:
        """Whether ``outputs`` and ``batch`` hold what this term reads (see ``optional``);
        ``key`` names the term in the error a callable selector raises."""
        inputs = self.input if isinstance(self.input, tuple) else (self.input,)
        wanted = [
            ("input" if i == 0 else f"input[{i}]", s, outputs, batch, True)
            for i, s in enumerate(inputs)
            if s is not None
        ]
        wanted += [
            (role, s, batch, outputs, False)
            for role, s in (
                ("target", self.target),
                ("mask", self.mask),
                ("sample_weight", self.sample_weight),
            )
            if s is not None
        ]
        for role, selector, source, other, from_outputs in wanted:
            if callable(selector):
                pair = (source, other) if from_outputs else (other, source)
                found: Any  # a callable selector may return None (see optional)
                try:
                    found = selector(*pair)
                except Exception as exc:
                    raise _selecting(exc, key, role, selector) from exc
                if found is None:
                    return False
            elif isinstance(selector, str):
                if not isinstance(source, Mapping) or source.get(selector) is None:
                    return False
            elif not isinstance(source, Sequence) or not -len(source) <= selector < len(source):
                return False
        return True

    def _call(
        self, key: str, outputs: Any, batch: Any, protect: bool = False
    ) -> tuple[Any, Tensor | None]:
        """Select the inputs (any selector kind) and call the loss on them; also the target.

        ``protect``: masked-out entries (mask or sample weight 0) are replaced by safe values
        before the loss sees them, so a NaN or a garbage label there neither reaches the value
        checks nor the gradient (which is exactly 0 there).
        """
        target = None
        args: tuple[Any, ...]
        if self.input is None and self.target is None:
            args = (outputs, batch)
        else:
            if self.target is not None:
                target = _pick(key, "target", self.target, "batch", batch, outputs)
            xs = self._inputs(key, outputs, batch)
            if self._plain is not None and target is not None:
                self._check_plain(xs[0], target)
            if protect:
                kept = self._kept(key, outputs, batch)
                xs = tuple(_masked_out(x, kept, 0.0) for x in xs)
                if target is not None:
                    target = _masked_out(target, kept, self._safe_target())
            args = xs if target is None else (*xs, target)
        try:
            return self._loss_fn(*args), target
        except Exception as exc:
            raise self._loss_failed(exc, key, args, batch) from exc

    def _loss_failed(
        self, exc: Exception, key: str, args: tuple[Any, ...], batch: Any = None
    ) -> Exception:
        """The loss raised ``exc`` on ``args``: say so naming the term and what it was given."""
        if isinstance(exc, LossInputError):
            if str(exc).startswith(f"term {key!r}"):
                return exc
            return LossInputError(f"term {key!r}: {exc}")
        missing = self._missing_selectors(exc, args, batch)
        if missing is not None:
            return LossInputError(f"term {key!r}: {missing}")
        if self.input is None and self.target is None:
            roles: list[str] = ["outputs", "batch"]
        else:
            count = len(self.input) if isinstance(self.input, tuple) else 1
            roles = ["input" if i == 0 else f"input[{i}]" for i in range(count)] + ["target"]
        given = ", ".join(
            f"{role} {tuple(a.shape)} {str(a.dtype).removeprefix('torch.')}"
            if isinstance(a, Tensor)
            else f"{role} {_describe(a)}"
            for role, a in zip(roles, args)
        )
        fn = self._loss_fn
        name = getattr(fn, "display_name", None) or (
            type(fn).__name__ if isinstance(fn, nn.Module) else getattr(fn, "__qualname__", "")
        )
        return keyed(exc, key, f"calling the loss {name} on {given}")

    def _missing_selectors(self, exc: Exception, args: tuple[Any, ...], batch: Any) -> str | None:
        """Why a loss failed when the term lacks a selector it needs (the usual first mistake:
        ``Term("cross_entropy", input="logits")`` with no ``target=``), or None."""
        if not isinstance(exc, (TypeError, AttributeError)) or self.target is not None:
            return None
        fn = self._loss_fn
        if getattr(fn, "contract", None) is None and losses.contract_of(fn) is None:
            return None  # a loss of the user's own: its signature is its business
        name = getattr(self._loss_fn, "display_name", None) or type(self._loss_fn).__name__
        if self.input is None:
            outputs, whole = args
            if not (isinstance(outputs, Mapping) or isinstance(batch, Mapping)):
                return None
            return (
                f"the term has no input= or target= selector, so {name} was called on the whole "
                f"outputs ({_describe(outputs)}) and batch ({_describe(whole)}); give "
                "input='<key of the outputs>' and target='<key of the batch>' (or write the "
                "loss as fn(outputs, batch))"
            )
        if isinstance(exc, TypeError) and "target" in str(exc):
            return (
                f"the term has no target= selector, but {name} takes a target; the batch is "
                f"{_describe(batch)}: give target='<key of the batch>' (a key, a position or "
                "fn(outputs, batch))"
            )
        return None

    def _check_plain(self, x: Tensor, target: Tensor) -> None:
        """Check a plain ``torch.nn`` loss's inputs against the catalogue's contract for its
        class (metadata only; again only when shapes, dtypes or devices change)."""
        signature = (x.shape, x.dtype, x.device, target.shape, target.dtype, target.device)
        if signature == self._plain_passed:
            return
        assert self._plain is not None
        name, contract = self._plain
        loss = type(self._loss_fn).__name__
        contract.check_metadata(f"torch.nn.{loss} (checked as {name!r})", x, target)
        self._plain_passed = signature

    def _kept(self, key: str, outputs: Any, batch: Any) -> list[Tensor]:
        """Where the mask and the sample weights keep entries (as given: per sample or per
        element)."""
        return [
            _pick(key, role, selector, "batch", batch, outputs) != 0
            for role, selector in (("mask", self.mask), ("sample_weight", self.sample_weight))
            if selector is not None
        ]

    def _safe_target(self) -> float:
        """A target value every loss accepts where the entry is masked out: 0, or 1 for a
        loss whose contract asks for signs (-1 or 1)."""
        contract = getattr(self._loss_fn, "contract", None)
        return 1.0 if getattr(contract, "target", None) == "sign" else 0.0

    @staticmethod
    def _checked(key: str, value: Any) -> Tensor:
        if not isinstance(value, Tensor):
            raise LossInputError(
                f"term {key!r}: the loss returned a {type(value).__name__}, expected a tensor "
                "(a Python number has no gradient); return a floating-point torch.Tensor"
            )
        if not value.is_floating_point():
            raise LossInputError(
                f"term {key!r}: the loss returned a tensor of dtype "
                f"{str(value.dtype).removeprefix('torch.')}, expected a floating-point tensor "
                "(an integer or boolean value has no gradient); compute it in floating point, or "
                "log a count with .float() in a monitor-only term (monitor=True)"
            )
        return value

    def _check_sample_weight(self, key: str, weight: Tensor) -> None:
        """Refuse negative sample weights (first calls only: a host sync, as value checks)."""
        if torch.compiler.is_compiling():
            return
        self._weight_checks -= 1
        if weight.numel() == 0 or weight.dtype == torch.bool:
            return
        low = float(weight.detach().min())
        if low < 0:
            raise LossInputError(
                f"term {key!r}: sample_weight has values down to {low:.4g} (shape "
                f"{tuple(weight.shape)}), expected weights >= 0 (a negative weight rewards the "
                "loss on its samples); clamp them with w.clamp_min(0) or mask those samples out"
            )

    def _finish(self, key: str, value: Any) -> Tensor:
        """Check that the loss returned a scalar tensor."""
        tensor = self._checked(key, value)
        if tensor.ndim != 0:
            raise LossInputError(
                f"term {key!r}: the loss returned a tensor of shape {tuple(tensor.shape)}, "
                "expected a scalar (0-dim); reduce it (e.g. `.mean()`) or use "
                "mask=/sample_weight= for per-sample weighting"
            )
        return tensor

    def _reduce(self, key: str, value: Tensor, outputs: Any, batch: Any) -> tuple[Tensor, Tensor]:
        if value.ndim == 0:
            raise LossInputError(
                f"term {key!r}: mask/sample_weight need the unreduced loss, but the loss "
                "returned a scalar; does it honour reduction='none'?"
            )
        weight: Tensor | None = None
        for role, selector in (("mask", self.mask), ("sample_weight", self.sample_weight)):
            if selector is None:
                continue
            w = _pick(key, role, selector, "batch", batch, outputs)
            if self._weight_checks and role == "sample_weight":
                self._check_sample_weight(key, w)
            if w.shape != value.shape and w.shape != value.shape[:1]:
                raise LossInputError(
                    f"term {key!r}: {role} has shape {tuple(w.shape)}, expected "
                    f"{tuple(value.shape[:1])} (per sample) or {tuple(value.shape)} (per "
                    "element, the unreduced loss's shape); it is never broadcast"
                )
            w = w.to(value.dtype).reshape(w.shape + (1,) * (value.ndim - w.ndim))
            weight = w if weight is None else weight * w
        assert weight is not None
        weight = weight.expand_as(value)
        kept = weight != 0
        numerator = torch.where(kept, value * weight, value.new_zeros(())).sum()
        total = weight.sum()
        return numerator / total.clamp_min(torch.finfo(value.dtype).tiny), total

    def extra_repr(self) -> str:
        parts = [f"input={self.input!r}", f"target={self.target!r}", f"weight={self.weight!r}"]
        if self.mask is not None:
            parts.append(f"mask={self.mask!r}")
        if self.sample_weight is not None:
            parts.append(f"sample_weight={self.sample_weight!r}")
        if self.monitor:
            parts.append("monitor=True")
        if self.optional:
            parts.append("optional=True")
        return ", ".join(parts)
