"""Fused kernels for the focal, asymmetric, log-cosh and Charbonnier losses.

Written as a chain of torch ops, an elementwise loss such as the focal loss keeps a dozen
full-size intermediates (sigmoid, log-sigmoid, modulating factor, products...) alive for backward,
and writes every one of them to memory. Here each loss is a :class:`Kernel`: the loss of one
element and its derivative with respect to the input, derived by hand. A custom autograd Function
runs them, saves only the input and the target (which are alive anyway), computes a reduced value
without materialising the elementwise loss, and writes the gradient in one pass. The softmax focal
loss gets the same treatment: it saves the log-sum-exp and the target log-probability, ``1 / C`` of
the input's size each.

How the kernels run is ``impl``:

- ``"compiled"``: through ``torch.compile`` (inductor), so each becomes one fused loop over memory
  (C++/OpenMP on the CPU, Triton on the GPU). The first call compiles (seconds, once per process,
  dtype and kernel; ``dynamic=True`` so other sizes do not recompile). Compile errors raise.
- ``"eager"``: the same functions as plain torch ops. Temporaries are freed as soon as each
  forward or backward finishes; nothing but the inputs is kept for backward.
- ``"auto"`` (the losses' default): compiled from :data:`COMPILE_MIN_NUMEL` elements, eager below,
  so small problems never wait for a compiler. The compile runs in a background thread (one per
  kernel signature: dtype, rank, device, scalar parameters, grad mode) while the eager kernel
  serves the calls; the compiled kernel takes over once ready, so no step waits for the compiler
  (:func:`wait_for_compiled_kernels` waits where the switch must have happened). If compiling
  fails, losskit warns once (:class:`~losskit.errors.LossKitWarning`) and runs eager from then on.

Why a background compile, by measurement (``benchmarks/losses.py``, 1M elements, a fresh process
with an empty inductor cache, 2 shared cores at load ~10): the first call of the focal loss took
39 s and of the softmax focal loss 35 s when it compiled on the spot, 0.9 s and 0.7 s with the
eager kernel serving it. The eager steps made while the compiler runs are slower than usual (the
compiler takes a core), but none stalls for the whole compile.

Why compiled, by measurement (2-core shared CPU, torch 2.13, binary focal forward + backward,
reduction "mean"; ``benchmarks/losses.py`` for the peers). At 16M float32 elements the eager
kernel takes about 1.5 s, as long as the torchvision formula through autograd (1.3 s): each of its
ops writes a fresh full-size tensor whose pages are faulted in (a 64 MB ``clone`` costs 20-30 ms
here). Eager chunks small enough to stay in cache were slower still on two shared cores (one
OpenMP barrier per op and chunk). The compiled kernel reads the input and the target once
forward and once backward and writes only the gradient: 0.07-0.16 s, 3-5 copies' time. Below
about 10K elements the compiled call's fixed cost (~0.25 ms: guards, the autograd Function)
exceeds the work and the eager kernel is as fast (it takes 1.6x the autograd formula's time at 1K
elements, the same at 256K); at 64K the compiled kernel is 1.6x faster than the eager one, at 16M
9x. ``"auto"`` compiles from :data:`COMPILE_MIN_NUMEL` = 65,536 elements, which also keeps small
problems from waiting seconds for a compiler.

Inside an outer ``torch.compile`` the kernels are traced as plain ops (inductor fuses them there).
Under ``torch.func`` transforms they run eagerly (``generate_vmap_rule``). A backward with
``create_graph=True`` runs the eager derivative, so double backward differentiates it.
"""

from __future__ import annotations

import functools
import threading
import time
import types
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeAlias, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.errors import ConfigError, LossInputError, LossKitWarning

__all__ = [
    "ASYMMETRIC",
    "CHARBONNIER",
    "COMPILE_MIN_NUMEL",
    "FOCAL",
    "FOCAL_POS_WEIGHT",
    "LOG_COSH",
    "Impl",
    "Kernel",
    "Reduction",
    "check_impl",
    "check_reduction",
    "compute_dtype",
    "elementwise_loss",
    "softmax_focal_loss",
    "wait_for_compiled_kernels",
]

Impl: TypeAlias = Literal["auto", "compiled", "eager"]
Reduction: TypeAlias = Literal["mean", "sum", "none"]
_Fn = TypeVar("_Fn", bound=Callable[..., Any])

COMPILE_MIN_NUMEL = 1 << 16
"""``impl="auto"`` compiles from this many input elements (65,536) up."""

_LOG2 = 0.6931471805599453

# The first compile failure of this process: "auto" runs eager once it is set (and warned).
_compile_failure: list[str] = []
_failure_warned: list[bool] = []
# Kernel signatures (:func:`_signature`) whose compiled form is ready, and the background
# compiles started; "auto" runs eager until its signature is ready.
_ready: set[tuple[Any, ...]] = set()
_compiling: dict[tuple[Any, ...], threading.Thread] = {}
_compile_lock = threading.Lock()


def check_reduction(owner: str, reduction: str) -> Reduction:
    """``reduction`` if valid, else a :class:`~losskit.errors.ConfigError` naming ``owner``."""
    if reduction not in ("mean", "sum", "none"):
        raise ConfigError(f"{owner}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def check_impl(owner: str, impl: str) -> Impl:
    """``impl`` if valid, else a :class:`~losskit.errors.ConfigError` naming ``owner``."""
    if impl not in ("auto", "compiled", "eager"):
        raise ConfigError(f"{owner}: impl must be 'auto', 'compiled' or 'eager', got {impl!r}")
    return impl  # type: ignore[return-value]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs (float16, bfloat16), else the input's own dtype."""
    return torch.promote_types(dtype, torch.float32)


def _upcast(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    x = x.to(compute_dtype(x.dtype))
    return x, t.to(x.dtype)


# --- the kernels: loss of one element and its derivative in the input ----------------------------


def _focal_value(
    x: Tensor, t: Tensor, gamma: float, alpha: float | None, pos_weight: Tensor | None = None
) -> Tensor:
    x, t = _upcast(x, t)
    # pos_weight (x's shape) weighs the positive term of the cross-entropy, as BCEWithLogitsLoss.
    ce = F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight, reduction="none")
    # 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x); lerp is exact at t = 0 and t = 1, so a
    # confident logit keeps its tiny sigmoid(-x) instead of 1 - sigmoid(x) rounding to 0.
    value = ce * torch.lerp(torch.sigmoid(x), torch.sigmoid(-x), t).pow(gamma)
    if alpha is not None:
        value = value * (t * (2 * alpha - 1) + (1 - alpha))  # alpha t + (1 - alpha)(1 - t)
    return value


def _focal_dx(
    x: Tensor, t: Tensor, gamma: float, alpha: float | None, pos_weight: Tensor | None = None
) -> Tensor:
    # With m = 1 - p_t:  d/dx [ce m^g] = m^g [(p - t) + g ce (1 - 2t) p q / m],  q = 1 - p.
    # With a pos_weight w, ce = w t softplus(-x) + (1 - t) softplus(x) and (p - t) becomes
    # (1 - t) p - w t q.
    # m is a convex combination of p and q, so p q / m lies in [0, 1] (it is p or q for hard
    # targets) and no negative power of m appears: gamma < 1 with saturated probabilities stays
    # finite (kornia#918). Where m underflows to 0, p q is 0 too and the ratio is 0.
    x, t = _upcast(x, t)
    p, q = torch.sigmoid(x), torch.sigmoid(-x)
    ce = F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight, reduction="none")
    m = torch.lerp(p, q, t)
    ratio = p * q / m.clamp_min(torch.finfo(m.dtype).tiny)
    dce = (p - t) if pos_weight is None else (1 - t) * p - pos_weight * t * q
    grad = m.pow(gamma) * (dce + gamma * ce * ratio * (1 - 2 * t))
    if alpha is not None:
        grad = grad * (t * (2 * alpha - 1) + (1 - alpha))
    return grad


def _minus_log1m(shifted: Tensor, q: Tensor, clip: float) -> Tensor:
    """``-log(1 - shifted)`` for ``shifted = p - clip``: ``log1p`` near 0, ``log(q + clip)`` near
    1, where ``1 - shifted`` would round to 0 (positives at large logits multiply it by 0)."""
    return torch.where(shifted < 0.5, -torch.log1p(-shifted), -torch.log(q + clip))


def _asymmetric_value(
    x: Tensor, t: Tensor, gamma_pos: float, gamma_neg: float, clip: float
) -> Tensor:
    x, t = _upcast(x, t)
    minus_log_p = F.softplus(-x)
    minus_log_q = F.softplus(x)  # -log(1 - p)
    positive = torch.exp(-gamma_pos * minus_log_q) * minus_log_p  # (1-p)^g+ * -log p
    if clip > 0:
        shifted = torch.sigmoid(x) - clip  # p_m, the shifted probability; 0 where below
        inside = shifted > 0
        safe = torch.where(inside, shifted, 0.5)  # keeps the masked-out branch differentiable
        minus_log = _minus_log1m(safe, torch.sigmoid(-x), clip)
        negative = torch.where(inside, safe.pow(gamma_neg) * minus_log, 0.0)
    else:
        negative = torch.exp(-gamma_neg * minus_log_p) * minus_log_q  # p^g- * -log(1-p)
    return torch.lerp(negative, positive, t)  # t positive + (1 - t) negative


def _asymmetric_dx(x: Tensor, t: Tensor, gamma_pos: float, gamma_neg: float, clip: float) -> Tensor:
    x, t = _upcast(x, t)
    p, q = torch.sigmoid(x), torch.sigmoid(-x)
    minus_log_p = F.softplus(-x)
    minus_log_q = F.softplus(x)
    positive = -torch.exp(-gamma_pos * minus_log_q) * (gamma_pos * p * minus_log_p + q)
    if clip > 0:
        shifted = p - clip
        inside = shifted > 0
        safe = torch.where(inside, shifted, 0.5)
        # d/dx [s^g * -log(1-s)] with ds/dx = p q; -log(1-s)/s is bounded near s = 0.
        negative = (
            safe.pow(gamma_neg)
            * (p * q)
            * (gamma_neg * (_minus_log1m(safe, q, clip) / safe) + 1 / (q + clip))
        )
        negative = torch.where(inside, negative, 0.0)
    else:
        negative = torch.exp(-gamma_neg * minus_log_p) * (gamma_neg * q * minus_log_q + p)
    return torch.lerp(negative, positive, t)


def _log_cosh_value(x: Tensor, t: Tensor) -> Tensor:
    x, t = _upcast(x, t)
    d = (x - t).abs()
    return d + torch.log1p(torch.exp(-2 * d)) - _LOG2


def _log_cosh_dx(x: Tensor, t: Tensor) -> Tensor:
    x, t = _upcast(x, t)
    return torch.tanh(x - t)


def _charbonnier_value(x: Tensor, t: Tensor, eps: float) -> Tensor:
    x, t = _upcast(x, t)
    d = x - t
    return torch.sqrt(d * d + eps * eps)


def _charbonnier_dx(x: Tensor, t: Tensor, eps: float) -> Tensor:
    x, t = _upcast(x, t)
    d = x - t
    return d * torch.rsqrt(d * d + eps * eps)


# --- running them ---------------------------------------------------------------------------------


def _own_code(fn: _Fn, name: str) -> _Fn:
    """``fn`` with a code object of its own, named ``name``.

    Dynamo keys its compile cache (and its recompile limit of 8) by code object: entry points
    made from one template would share one cache and evict each other.
    """
    code = fn.__code__.replace(co_name=name)
    clone = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    return clone  # type: ignore[return-value]


class Kernel:
    """An elementwise loss: ``value(x, t, *params)`` and its derivative ``dx`` in ``x``.

    Both compute in :func:`compute_dtype`. ``residual`` kernels are functions of ``x - t``, so
    their derivative in the target is ``-dx``; the others are not differentiated in the target
    by the fused path: a target that requires grad (rare: a learned soft label) takes plain
    autograd through ``value``, without the hand-derived gradient's care at saturation.
    """

    def __init__(
        self,
        name: str,
        value: Callable[..., Tensor],
        dx: Callable[..., Tensor],
        *,
        residual: bool,
    ) -> None:
        self.name = name
        self.value = value
        self.dx = dx
        self.residual = residual

        def reduced(x: Tensor, t: Tensor, w: Tensor | None, *params: Any) -> Tensor:
            v = value(x, t, *params)
            return (v if w is None else v * w).sum()

        def unreduced(x: Tensor, t: Tensor, w: Tensor | None, *params: Any) -> Tensor:
            v = value(x, t, *params)
            return (v if w is None else v * w).to(x.dtype)

        def gradient(
            x: Tensor, t: Tensor, w: Tensor | None, go: Tensor, for_target: bool, *params: Any
        ) -> tuple[Tensor, Tensor | None]:
            g = dx(x, t, *params) * go
            if w is not None:
                g = g * w
            return g.to(x.dtype), ((-g).to(t.dtype) if for_target else None)

        self.reduced = _own_code(reduced, f"{name}_reduced")
        self.unreduced = _own_code(unreduced, f"{name}_unreduced")
        self.gradient = _own_code(gradient, f"{name}_gradient")

    def __repr__(self) -> str:
        return f"Kernel({self.name!r})"


FOCAL = Kernel("focal", _focal_value, _focal_dx, residual=False)
FOCAL_POS_WEIGHT = Kernel("focal_pos_weight", _focal_value, _focal_dx, residual=False)
"""The focal kernel with a third parameter: a ``pos_weight`` tensor of the flat input's shape."""
ASYMMETRIC = Kernel("asymmetric", _asymmetric_value, _asymmetric_dx, residual=False)
LOG_COSH = Kernel("log_cosh", _log_cosh_value, _log_cosh_dx, residual=True)
CHARBONNIER = Kernel("charbonnier", _charbonnier_value, _charbonnier_dx, residual=True)


@functools.cache
def _compiled(fn: _Fn) -> _Fn:
    return torch.compile(fn, dynamic=True, fullgraph=True)  # type: ignore[return-value]


def _use_compiled(impl: Impl, x: Tensor) -> bool:
    if impl == "eager" or torch.compiler.is_compiling():
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    if impl == "compiled":
        return True
    return x.numel() >= COMPILE_MIN_NUMEL and not _compile_failure


def _record_failure(exc: BaseException) -> None:
    _compile_failure.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])


def _warn_failure_once() -> None:
    if _compile_failure and not _failure_warned:
        _failure_warned.append(True)
        warnings.warn(
            f"losskit could not compile its fused loss kernels ({_compile_failure[0]}); "
            "running them eagerly from now on (same values, slower). Pass impl='eager' to "
            "the loss to choose that explicitly.",
            LossKitWarning,
            stacklevel=3,
        )


def _signature(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a compiled kernel's guards depend on: dtypes, ranks, devices, scalars, grad mode."""
    parts: list[Any] = [fn, torch.is_grad_enabled()]
    for a in args:
        if isinstance(a, Tensor):
            parts.append((a.dtype, a.dim(), a.device.type))
        elif isinstance(a, (bool, int, float, str, type(None))):
            parts.append(a)
        else:
            parts.append(type(a))
    return tuple(parts)


def _compile(
    key: tuple[Any, ...], fn: Callable[..., Any], args: tuple[Any, ...], grad: bool
) -> None:
    try:
        with torch.set_grad_enabled(grad):
            _compiled(fn)(*args)
    except Exception as exc:  # any compiler failure: "auto" runs eager, and warns
        _record_failure(exc)
    else:
        _ready.add(key)


def _compile_in_background(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """True once ``fn``'s compiled form is ready for ``args``; until then, compile it in a
    daemon thread (one per signature) and answer False."""
    key = _signature(fn, args)
    if key in _ready:
        return True
    with _compile_lock:
        if key not in _compiling:
            thread = threading.Thread(
                target=_compile,
                args=(key, fn, args, torch.is_grad_enabled()),
                name=f"losskit-compile-{fn.__name__}",
                daemon=True,
            )
            _compiling[key] = thread
            thread.start()
    return False


def wait_for_compiled_kernels(timeout: float | None = None) -> bool:
    """Wait until the fused kernels compiling in the background are ready.

    With ``impl="auto"`` a loss runs its eager kernel while the compiled one builds in a
    background thread, so that no training step waits for the compiler; the compiled kernel
    takes over once ready. Call this where the switch must have happened (a benchmark's
    steady state, a test). Returns False if ``timeout`` seconds passed first.

    Example::

        >>> import torch
        >>> from losskit import losses
        >>> x = torch.randn(8, requires_grad=True)  # small: eager, nothing to compile
        >>> losses.FocalLoss(check="off")(x, torch.zeros_like(x)).backward()
        >>> losses.wait_for_compiled_kernels(timeout=60)
        True
    """
    with _compile_lock:
        threads = list(_compiling.values())
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _run(fn: Callable[..., Any], compiled: bool, strict: bool, *args: Any) -> Any:
    """``fn(*args)``, through its compiled form when ``compiled``.

    ``strict`` (``impl="compiled"``) compiles on this call and raises a compile error; else the
    compiled form is used once a background compile made it ready (eager until then), and a
    failed compile warns once and leaves ``fn`` eager from then on.
    """
    if compiled and not _compile_failure:
        if strict:
            return _compiled(fn)(*args)
        if _compile_in_background(fn, args):
            try:
                return _compiled(fn)(*args)
            except Exception as exc:  # any compiler failure (a recompile): fall back, loudly
                _record_failure(exc)
    _warn_failure_once()
    return fn(*args)


class _Elementwise(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor,
        t: Tensor,
        w: Tensor | None,
        kernel: Kernel,
        params: tuple[Any, ...],
        reduction: Reduction,
        compiled: bool,
        strict: bool,
    ) -> Tensor:
        if reduction == "none":
            out: Tensor = _run(kernel.unreduced, compiled, strict, x, t, w, *params)
            return out
        total: Tensor = _run(kernel.reduced, compiled, strict, x, t, w, *params)
        return total / x.numel() if reduction == "mean" else total

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, t, w, kernel, params, reduction, compiled, strict = inputs
        ctx.save_for_backward(x, t, w)
        ctx.kernel, ctx.params, ctx.reduction = kernel, params, reduction
        ctx.compiled, ctx.strict, ctx.numel = compiled, strict, x.numel()

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x, t, w = ctx.saved_tensors
        kernel: Kernel = ctx.kernel
        go = grad_output / ctx.numel if ctx.reduction == "mean" else grad_output
        for_target = bool(ctx.needs_input_grad[1]) and kernel.residual
        # create_graph=True: the eager derivative, so that autograd can differentiate it again.
        compiled = ctx.compiled and not torch.is_grad_enabled()
        gx, gt = _run(kernel.gradient, compiled, ctx.strict, x, t, w, go, for_target, *ctx.params)
        return gx, gt, None, None, None, None, None, None


def elementwise_loss(
    kernel: Kernel,
    input: Tensor,
    target: Tensor,
    params: tuple[Any, ...],
    reduction: Reduction,
    impl: Impl,
    weight: Tensor | None = None,
    class_dim: int = 1,
    element_weight: Tensor | None = None,
) -> Tensor:
    """``kernel``'s loss of ``input`` against ``target`` (same shape), reduced.

    ``weight`` (``(C,)``, optional) multiplies the loss of each element by the weight of its
    index along ``class_dim``; ``element_weight`` (the input's shape, instead of ``weight``)
    multiplies each element's loss by its own weight. ``"none"`` returns the input's shape and
    dtype; ``"mean"`` and ``"sum"`` a scalar in :func:`compute_dtype` (float32 for half-precision
    inputs); ``"mean"`` divides by the number of elements whatever the weights.
    """
    shape = input.shape
    w: Tensor | None = None
    if element_weight is not None:
        x, t = input.reshape(-1), target.reshape(-1)
        w = element_weight.to(compute_dtype(input.dtype)).reshape(-1)
    elif weight is None:
        x, t = input.reshape(-1), target.reshape(-1)
    else:
        classes = shape[class_dim]
        outer = 1
        for n in shape[:class_dim]:
            outer *= n
        x = input.reshape(outer, classes, -1)
        t = target.reshape(outer, classes, -1)
        w = weight.to(compute_dtype(input.dtype)).reshape(1, classes, 1)
    if (target.requires_grad and not kernel.residual) or (w is not None and w.requires_grad):
        value = kernel.value(x, t, *params)
        value = value if w is None else value * w
        if reduction == "none":
            return value.to(input.dtype).reshape(shape)
        return value.mean() if reduction == "mean" else value.sum()
    compiled = _use_compiled(impl, input)
    out: Tensor = _Elementwise.apply(  # type: ignore[no-untyped-call]
        x, t, w, kernel, params, reduction, compiled, impl == "compiled"
    )
    return out.reshape(shape) if reduction == "none" else out


# --- softmax focal: a reduction over classes, then elementwise ------------------------------------


def _softmax_focal_targets(
    t: Tensor, w: Tensor | None, ignore_index: int | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Targets safe to index with (ignored ones set to 0) and each position's weight w_t."""
    if ignore_index is None:
        return t, torch.ones_like(t, dtype=dtype) if w is None else w.to(dtype)[t]
    valid = t != ignore_index
    safe = torch.where(valid, t, 0)
    return safe, valid.to(dtype) if w is None else torch.where(valid, w.to(dtype)[safe], 0.0)


def _softmax_focal_parts(
    x: Tensor, t: Tensor, w: Tensor | None, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For ``x`` ``(N, C, S)`` and ``t`` ``(N, S)``: safe targets, log-sum-exp, log p_t, w_t."""
    x = x.to(compute_dtype(x.dtype))
    safe, wt = _softmax_focal_targets(t, w, ignore_index, x.dtype)
    lse = torch.logsumexp(x, 1)
    log_p = x.gather(1, safe.unsqueeze(1)).squeeze(1) - lse
    return safe, lse, log_p, wt


def _softmax_focal_forward(
    x: Tensor, t: Tensor, w: Tensor | None, gamma: float, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _, lse, log_p, wt = _softmax_focal_parts(x, t, w, ignore_index)
    loss = -wt * (-torch.expm1(log_p)).pow(gamma) * log_p
    return loss, lse, log_p, wt.sum()


def _softmax_focal_backward(
    x: Tensor,
    t: Tensor,
    w: Tensor | None,
    lse: Tensor,
    log_p: Tensor,
    go: Tensor,
    gamma: float,
    ignore_index: int | None,
) -> Tensor:
    xc = x.to(compute_dtype(x.dtype))
    safe, wt = _softmax_focal_targets(t, w, ignore_index, xc.dtype)
    # d/dlog_p [-(1-p)^g log_p] = (1-p)^g (g p log_p / (1-p) - 1); log_p / (1-p) -> -1 as p -> 1,
    # so gamma < 1 stays finite where the target probability saturates.
    one_minus_p = -torch.expm1(log_p)
    ratio = torch.where(
        one_minus_p > 0, log_p / torch.where(one_minus_p > 0, one_minus_p, 1.0), -1.0
    )
    coef = wt * one_minus_p.pow(gamma) * (gamma * torch.exp(log_p) * ratio - 1) * go
    prob = torch.exp(xc - lse.unsqueeze(1))
    classes = torch.arange(x.shape[1], device=x.device).reshape(1, -1, 1)
    onehot = (classes == safe.unsqueeze(1)).to(xc.dtype)
    return (coef.unsqueeze(1) * (onehot - prob)).to(x.dtype)


class _SoftmaxFocal(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor,
        t: Tensor,
        w: Tensor | None,
        gamma: float,
        ignore_index: int | None,
        reduction: Reduction,
        compiled: bool,
        strict: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        loss, lse, log_p, denominator = _run(
            _softmax_focal_forward, compiled, strict, x, t, w, gamma, ignore_index
        )
        if reduction == "none":
            out = loss.to(x.dtype)
        elif reduction == "sum":
            out = loss.sum()
        else:
            # Weighted mean over the counted positions, as F.cross_entropy; 0 if none counts.
            out = torch.where(denominator > 0, loss.sum() / denominator, 0.0)
        return out, lse, log_p, denominator

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, t, w, gamma, ignore_index, reduction, compiled, strict = inputs
        _, lse, log_p, denominator = output
        ctx.save_for_backward(x, t, w, lse, log_p, denominator)
        ctx.gamma, ctx.ignore_index, ctx.reduction = gamma, ignore_index, reduction
        ctx.compiled, ctx.strict = compiled, strict
        ctx.mark_non_differentiable(lse, log_p, denominator)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        x, t, w, lse, log_p, denominator = ctx.saved_tensors
        go: Tensor = grad_output
        if ctx.reduction == "mean":
            go = torch.where(denominator > 0, go / denominator, 0.0)
        compiled = ctx.compiled
        if torch.is_grad_enabled():
            # create_graph=True: recompute what depends on x, so that autograd sees it.
            compiled = False
            lse, log_p = _softmax_focal_parts(x, t, w, ctx.ignore_index)[1:3]
        grad = _run(
            _softmax_focal_backward,
            compiled,
            ctx.strict,
            x,
            t,
            w,
            lse,
            log_p,
            go,
            ctx.gamma,
            ctx.ignore_index,
        )
        return grad, None, None, None, None, None, None, None


def _check_class_range(name: str, t: Tensor, classes: int, ignore_index: int | None) -> None:
    """Raise for class indices outside ``[0, classes)`` (``ignore_index`` aside).

    Inductor's CPU kernels check indirect indices by throwing inside an OpenMP region, which
    aborts the process; one pass over the targets (1 / C of the logits) makes it an error instead.
    On the CPU this needs no device sync.
    """
    if t.numel() == 0:
        return
    counted = t if ignore_index is None else torch.where(t == ignore_index, 0, t)
    low, high = (int(v) for v in torch.aminmax(counted))
    if low < 0 or high >= classes:
        bad = high if high >= classes else low
        raise LossInputError(
            f"{name}: class index {bad} out of range for {classes} classes (input has {classes} "
            f"along dim 1)"
            + (f" (ignore_index={ignore_index} is excluded)" if ignore_index is not None else "")
        )


def softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    gamma: float,
    weight: Tensor | None,
    ignore_index: int | None,
    reduction: Reduction,
    impl: Impl,
    name: str = "softmax focal loss",
) -> Tensor:
    """Softmax focal loss of logits ``(N, C, *S)`` against class indices ``(N, *S)``.

    ``name`` names the loss in the error raised for a class index out of range.
    """
    n, classes = input.shape[0], input.shape[1]
    x = input.reshape(n, classes, -1)
    t = target.reshape(n, -1)
    if weight is not None and weight.requires_grad:
        _, _, log_p, wt = _softmax_focal_parts(x, t, weight, ignore_index)
        loss = -wt * (-torch.expm1(log_p)).pow(gamma) * log_p
        if reduction == "none":
            return loss.to(input.dtype).reshape(target.shape)
        total = loss.sum()
        if reduction == "sum":
            return total
        denominator = wt.sum()
        return torch.where(denominator > 0, total / torch.where(denominator > 0, denominator, 1), 0)
    compiled = _use_compiled(impl, input)
    if compiled and input.device.type == "cpu":
        _check_class_range(name, t, classes, ignore_index)
    out, _, _, _ = _SoftmaxFocal.apply(  # type: ignore[no-untyped-call]
        x, t, weight, gamma, ignore_index, reduction, compiled, impl == "compiled"
    )
    result: Tensor = out
    return result.reshape(target.shape) if reduction == "none" else result
