"""Forward + backward time and peak memory of losskit's losses against MONAI and kornia.

Cases, on logits of shape (N, C, H, W) with 1M (4, 16, 128, 128) and 16M (16, 16, 256, 256)
elements:

- ``focal`` (sigmoid, multi-label 0/1 targets of the logits' shape; gamma 2, alpha 0.25) against
  MONAI ``FocalLoss`` and kornia ``binary_focal_loss_with_logits`` (and, without ``--quick``, the
  published torchvision formula run through autograd);
- ``softmax_focal`` (class-index targets) against MONAI ``FocalLoss(use_softmax=True)`` and
  kornia ``focal_loss``;
- ``asymmetric`` (gamma_neg 4, gamma_pos 0, clip 0.05) against the reference implementation of
  Ridnik et al. (Alibaba-MIIL/ASL, run through autograd): neither MONAI nor kornia has it;
- ``dice`` and ``tversky`` (alpha 0.3, beta 0.7; softmax over class-index targets), losskit's
  registry entries, against MONAI ``DiceLoss`` / ``TverskyLoss`` and kornia ``dice_loss`` /
  ``tversky_loss``;
- ``jaccard`` and ``generalized_dice`` against MONAI (``DiceLoss(jaccard=True)``,
  ``GeneralizedDiceLoss``), ``lovasz_softmax`` against kornia, ``ssim`` (images in [0, 1]) against
  MONAI ``SSIMLoss``, ``hausdorff_dt`` against MONAI ``HausdorffDTLoss`` (scipy's distance
  transform), ``hausdorff_er`` (probabilities) against kornia ``HausdorffERLoss``, and
  ``cauchy``, ``geman_mcclure``, ``welsch`` against kornia's. The two Hausdorff losses run at 1M
  only (:data:`SLOW_CASES`).

Method. Each loss is measured in a fresh process of its own (both sizes; ``--quick`` measures
all in one): what ran before in a process moves a 16M step's time by up to 2x, for losskit and
the peers alike (the same losskit ``dice`` step took 30-61 ms, kornia's 57-99 ms, depending on
the cases measured before it), so a loss's figures must not depend on its place in the list.
Within that process every implementation of the loss runs on the same tensors. A step is one
forward and one backward to fresh gradients of the logits. losskit's losses first take 3 warm-up
steps (they compile the fused kernels and run the contract's first-call value checks); the peers
have nothing to warm up. The step that measures peak memory (below) is each implementation's
first timed sample; then rounds alternate between all implementations of a case, in an order
that rotates each round (the copy's heap trim before a round costs whichever runs next), and the
minimum is reported (the machine is shared: the minimum is the least disturbed run): 10 samples
at 1M and 5 at 16M. ``--quick`` (under a minute on a quiet 2-core machine) takes one sample of
each, at 16M for the cases of the summary's target keys (:data:`QUICK_16M`), 64K for the Hausdorff
losses and 1M for the others (:func:`runs_at`), measures the cold first call of
:data:`QUICK_COLD` only, and builds losskit's losses with ``check="off"`` so that one warm-up
step suffices (the value checks run on the first calls only: the steady state is the same); its
cold runs do not wait for the background compile (their steady step is the second call).
The copy floor is ``x.clone()`` of the logits, timed the same way: one read and one write of a
tensor of that size. Free heap memory is handed back to the system before each timed copy, so the
copy always writes fresh pages and pays their page faults, as a loss's new gradient does (always
at 16M, where glibc maps every such buffer afresh; at 1M a reused heap buffer can make a copy ten
times cheaper, which would make the floor depend on what ran before). Each loss is reported as a
multiple of it.

Peak memory is the growth of this process's resident set during one step, read from Linux: free
heap memory is handed back to the system (``malloc_trim``), the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``, value 5), the step runs, and the peak (``VmHWM``) minus the resident
size before the step is reported. It counts every page the step touches (temporaries, tensors
saved for backward, the gradient) and nothing allocated before it, such as compiled kernels. On a
system without those files the column reads n/a.

    python benchmarks/losses.py [--quick] [--only NAME[,NAME]]

``--only dice,tversky`` times those cases alone (and measures their cold first calls only).

Cold first call. Each loss's first forward + backward at 1M elements, value checks on, in a
fresh process whose ``TORCHINDUCTOR_CACHE_DIR`` is an empty directory, then (compiled kernels
ready) a steady-state step in the same process (``--no-cold`` skips these runs).

The last line printed is a JSON object with ``min_speedup_vs_best_peer`` (the least, over the
16M rows, of the fastest peer's time over losskit's; with ``--quick`` the rows of
:data:`QUICK_16M`; ``min_speedup_row`` names it; the 1M figure is
``min_speedup_vs_best_peer_1M``), ``<loss>_<size>_speedup_vs_best_peer`` for every row,
``max_first_call_ms_cold`` (and ``max_first_call_loss``), ``max_first_call_stall_ms_cold`` (the
most a cold first call took beyond that loss's steady-state step), ``focal_speedup_vs_best_peer``
(the fastest peer's time over losskit's ``focal`` at 16M elements) and ``focal_vs_copy_floor``
(losskit's time over the copy's), plus every measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit import losses
from losskit.losses.contracts import FIRST_CALLS

LossFn = Callable[[Tensor], Tensor]
SIZES = {"1M": (4, 16, 128, 128), "16M": (16, 16, 256, 256)}
QUICK_SIZES = {"64K": (2, 2, 128, 128), **SIZES}
"""``--quick``'s sizes: each case runs at one of them (:func:`runs_at`)."""
SLOW_CASES = ("hausdorff_dt", "hausdorff_er")
"""Cases run at 1M only (64K with ``--quick``) and with one round after the first sample: a step
of either takes 5-60 s there for losskit and the peers alike (a distance transform or 10 erosions
per image), so 16M would add most of an hour."""
QUICK_16M = ("focal", "dice", "tversky")
"""The cases ``--quick`` runs at 16M: those of the summary's target keys (the others run at 1M)."""
QUICK_COLD = ("focal",)
"""``--quick`` measures the cold first call of this one only (a fresh process costs 10-20 s): the
compiled kernel with the slowest cold first call beside ``asymmetric``'s, which compiles alike
(the others' are the same compile or none)."""


# --- peak memory ----------------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _can_measure_memory() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM:")
    except OSError:
        return False
    return _LIBC is not None


def measured_step(step: Callable[[], object], memory: bool) -> tuple[float, float | None]:
    """Time of ``step()`` in seconds and, with ``memory``, the growth of the resident set
    during it in MiB (see the module docstring)."""
    if memory:
        gc.collect()
        assert _LIBC is not None
        _LIBC.malloc_trim(0)
        _CLEAR_REFS.write_text("5")
        before = _status_kib("VmRSS:")
    elif _LIBC is not None:
        _LIBC.malloc_trim(0)
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    return seconds, (_status_kib("VmHWM:") - before) / 1024 if memory else None


# --- cases ----------------------------------------------------------------------------------------


@dataclass
class Case:
    loss: str
    size: str
    x: Tensor
    impls: dict[str, LossFn]
    ours: str = "losskit"
    notes: list[str] = field(default_factory=list)


def official_asl(x: Tensor, y: Tensor) -> Tensor:
    """Alibaba-MIIL/ASL AsymmetricLoss (gamma_neg 4, gamma_pos 0, clip 0.05), as a mean."""
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + 0.05).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=1e-8)) + (1 - y) * torch.log(xs_neg.clamp(min=1e-8))
    pt = xs_pos * y + xs_neg * (1 - y)
    loss = loss * torch.pow(1 - pt, 0 * y + 4 * (1 - y))
    return -loss.mean()


def torchvision_focal(x: Tensor, t: Tensor) -> Tensor:
    """torchvision.ops.sigmoid_focal_loss (alpha 0.25, gamma 2, mean), as published."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** 2
    return ((0.25 * t + 0.75 * (1 - t)) * loss).mean()


def _registered(name: str, module: str, **kwargs: object) -> LossFn | None:
    """losskit's registry entry ``name`` (its module imported), or None if it is not there."""
    with contextlib.suppress(ImportError):
        importlib.import_module(module)
    try:
        return losses.get(name, **kwargs)
    except Exception:
        return None


CASE_NAMES = (
    *("focal", "softmax_focal", "asymmetric", "dice", "tversky", "jaccard", "generalized_dice"),
    *("lovasz_softmax", "ssim", *SLOW_CASES, "cauchy", "geman_mcclure", "welsch"),
)
FIRST_GROUP = ("focal", "softmax_focal", "asymmetric", "dice", "tversky")
"""The cases that share one set of logits and targets per size (the others: :func:`peer_cases`)."""


def build_cases(
    sizes: dict[str, tuple[int, ...]], quick: bool, only: frozenset[str] | None = None
) -> list[Case]:
    """Every case at every size, or those of the losses in ``only``."""
    monai = importlib.import_module("monai.losses")
    kornia = importlib.import_module("kornia.losses")
    cls = "losskit.losses._classification"
    seg = "losskit.losses._segmentation"
    # --quick: no value checks, so one warm-up step suffices (they run on the first calls only,
    # so the steady state is the same).
    check = "off" if quick else "first"
    cases = []
    for label, shape in sizes.items():
        wanted = [name for name in FIRST_GROUP if only is None or name in only]
        if any(runs_at(name, label, quick) for name in wanted):
            g = torch.Generator().manual_seed(0)
            n, c, h, w = shape
            x = (torch.randn(shape, generator=g) * 2).requires_grad_()
            multilabel = (torch.rand(shape, generator=g) < 0.1).float()
            labels = torch.randint(0, c, (n, h, w), generator=g)

            focal = _registered("focal", cls, gamma=2.0, alpha=0.25, check=check)
            assert focal is not None
            monai_focal = monai.FocalLoss(gamma=2.0, alpha=0.25)
            impls: dict[str, LossFn] = {
                "losskit": lambda x, f=focal, t=multilabel: f(x, t),
                "monai": lambda x, f=monai_focal, t=multilabel: f(x, t),
                "kornia": lambda x, t=multilabel: kornia.binary_focal_loss_with_logits(
                    x, t, alpha=0.25, gamma=2.0, reduction="mean"
                ),
            }
            if not quick:
                impls["torchvision formula"] = lambda x, t=multilabel: torchvision_focal(x, t)
            cases.append(Case("focal", label, x, impls))

            softmax_focal = _registered("softmax_focal", cls, gamma=2.0, check=check)
            assert softmax_focal is not None
            monai_softmax = monai.FocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True)
            impls = {
                "losskit": lambda x, f=softmax_focal, y=labels: f(x, y),
                "monai": lambda x, f=monai_softmax, y=labels: f(x, y.unsqueeze(1)),
                "kornia": lambda x, y=labels: kornia.focal_loss(
                    x, y, alpha=None, gamma=2.0, reduction="mean"
                ),
            }
            cases.append(Case("softmax_focal", label, x, impls))

            asymmetric = _registered("asymmetric", cls, check=check)
            assert asymmetric is not None
            impls = {
                "losskit": lambda x, f=asymmetric, t=multilabel: f(x, t),
                "ASL reference": lambda x, t=multilabel: official_asl(x, t),
            }
            cases.append(Case("asymmetric", label, x, impls))

            for name, kwargs, monai_loss, kornia_fn in (
                (
                    "dice",
                    {},
                    monai.DiceLoss(softmax=True, to_onehot_y=True),
                    lambda x, y: kornia.dice_loss(x, y),
                ),
                (
                    "tversky",
                    {"alpha": 0.3, "beta": 0.7},
                    monai.TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7),
                    lambda x, y: kornia.tversky_loss(x, y, alpha=0.3, beta=0.7),
                ),
            ):
                ours = _registered(name, seg, check=check, **kwargs)
                impls = {
                    "monai": lambda x, f=monai_loss, y=labels: f(x, y.unsqueeze(1)),
                    "kornia": lambda x, f=kornia_fn, y=labels: f(x, y),
                }
                case = Case(name, label, x, impls)
                if ours is None:
                    case.notes.append(f"losskit has no {name!r} loss registered yet")
                else:
                    case.impls = {"losskit": lambda x, f=ours, y=labels: f(x, y), **impls}
                cases.append(case)
        others = [name for name in CASE_NAMES if name not in FIRST_GROUP]
        if any(runs_at(name, label, quick) for name in others if only is None or name in only):
            cases.extend(peer_cases(label, shape, check, monai, kornia))
    return [
        case
        for case in cases
        if runs_at(case.loss, case.size, quick) and (only is None or case.loss in only)
    ]


def _ours(name: str, check: str, **kwargs: object) -> LossFn:
    """losskit's registry entry ``name``, with ``check`` where the loss takes one."""
    for module in ("_segmentation", "_lovasz", "_ssim", "_distance", "_robust"):
        importlib.import_module(f"losskit.losses.{module}")
    try:
        return losses.get(name, check=check, **kwargs)
    except TypeError:
        return losses.get(name, **kwargs)


def _against(fn: Callable[[Tensor, Tensor], Tensor], target: Tensor) -> LossFn:
    return lambda x: fn(x, target)


def runs_at(loss: str, label: str, quick: bool = False) -> bool:
    """Whether ``loss`` has a row at size ``label``: the slow cases at 1M, the others at 1M and
    16M; with ``quick``, the slow cases at 64K, :data:`QUICK_16M` at 16M and the others at 1M."""
    if quick:
        if loss in SLOW_CASES:
            return label == "64K"
        return label == ("16M" if loss in QUICK_16M else "1M")
    return label == "1M" if loss in SLOW_CASES else label in SIZES


def peer_cases(
    label: str, shape: tuple[int, ...], check: str, monai: Any, kornia: Any
) -> list[Case]:
    """The other losses a peer implements, each against every peer that has it."""
    g = torch.Generator().manual_seed(1)
    n, c, h, w = shape
    logits = (torch.randn(shape, generator=g) * 2).requires_grad_()
    labels = torch.randint(0, c, (n, h, w), generator=g)
    channel = labels.unsqueeze(1)  # MONAI's to_onehot_y and kornia's Hausdorff take (N, 1, ...)
    probs = torch.softmax(logits.detach(), 1).requires_grad_()
    image = torch.rand(shape, generator=g).requires_grad_()
    reference = torch.rand(shape, generator=g)
    table: list[tuple[str, Tensor, dict[str, LossFn]]] = [
        (
            "jaccard",
            logits,
            {
                "losskit": _against(_ours("jaccard", check), labels),
                "monai": _against(
                    monai.DiceLoss(softmax=True, to_onehot_y=True, jaccard=True), channel
                ),
            },
        ),
        (
            "generalized_dice",
            logits,
            {
                "losskit": _against(_ours("generalized_dice", check), labels),
                "monai": _against(
                    monai.GeneralizedDiceLoss(softmax=True, to_onehot_y=True), channel
                ),
            },
        ),
        (
            "lovasz_softmax",
            logits,
            {
                "losskit": _against(_ours("lovasz_softmax", check, classes="all"), labels),
                "kornia": _against(kornia.LovaszSoftmaxLoss(), labels),
            },
        ),
        (
            "ssim",
            image,
            {
                "losskit": _against(_ours("ssim", check), reference),
                "monai": _against(monai.SSIMLoss(spatial_dims=2), reference),
            },
        ),
        (
            "hausdorff_dt",
            logits,
            {
                "losskit": _against(_ours("hausdorff_dt", check), labels),
                "monai": _against(monai.HausdorffDTLoss(softmax=True, to_onehot_y=True), channel),
            },
        ),
        (
            "hausdorff_er",
            probs,
            {
                "losskit": _against(_ours("hausdorff_er", check, from_logits=False), labels),
                "kornia": _against(kornia.HausdorffERLoss(), channel),
            },
        ),
    ]
    for name in ("cauchy", "geman_mcclure", "welsch"):
        peer = getattr(kornia, f"{name}_loss")
        table.append(
            (
                name,
                image,
                {
                    "losskit": _against(_ours(name, check), reference),
                    "kornia": _against(lambda x, y, f=peer: f(x, y, reduction="mean"), reference),
                },
            )
        )
    return [Case(name, label, x, impls) for name, x, impls in table]


# --- measuring ------------------------------------------------------------------------------------


def _step(fn: LossFn, x: Tensor) -> None:
    x.grad = None
    fn(x).backward()
    x.grad = None


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Result:
    loss: str
    size: str
    impl: str
    seconds: float
    first_call_s: float
    peak_mib: float | None


def measure(
    case: Case, rounds: int, memory: bool, warmups: int
) -> tuple[list[Result], float, float | None]:
    """Results of every implementation of ``case``, the copy floor's time and its peak.

    The step that measures memory is also the first timed sample of each implementation;
    ``rounds`` more follow, alternating between the implementations.
    """
    if case.loss in SLOW_CASES:
        rounds, warmups = min(rounds, 1), 1
    x = case.x
    first: dict[str, float] = {}
    peaks: dict[str, float | None] = {}
    times: dict[str, list[float]] = {name: [] for name in [*case.impls, "copy"]}
    for name, fn in case.impls.items():
        if name == case.ours:  # compile, and the contract's first-call value checks
            first[name] = _time(lambda fn=fn: _step(fn, x))
            for _ in range(warmups - 1):
                _step(fn, x)
            # "auto" compiles in the background: the steady state is the compiled kernel's.
            losses.wait_for_compiled_kernels()
            _step(fn, x)
        seconds, peaks[name] = measured_step(lambda fn=fn: _step(fn, x), memory)
        first.setdefault(name, seconds)  # the peers have nothing to warm up
        times[name].append(seconds)
    # The copy always writes fresh pages (the heap trimmed first), as a new 16M gradient does.
    seconds, copy_peak = measured_step(lambda: x.detach().clone(), memory)
    times["copy"].append(seconds)
    names = list(case.impls)
    for r in range(rounds):
        # A rotating order: the copy before each round trims the heap, and the implementation
        # that runs next pays for regrowing it (2-4 ms at 1M); each takes that place in turn.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_time(lambda fn=case.impls[name]: _step(fn, x)))
        times["copy"].append(measured_step(lambda: x.detach().clone(), memory=False)[0])
    results = [
        Result(case.loss, case.size, name, min(times[name]), first[name], peaks[name])
        for name in case.impls
    ]
    return results, min(times["copy"]), copy_peak


def first_call_ms(loss: str, wait: bool = True) -> tuple[float, float]:
    """The first forward + backward of losskit's ``loss`` at 1M elements, value checks on, and a
    steady-state one (compiled kernels ready; without ``wait``, the next call, whatever serves
    it while a background compile runs), in ms."""
    case = next(c for c in build_cases({"1M": SIZES["1M"]}, quick=False) if c.loss == loss)
    fn = case.impls[case.ours]
    first = _time(lambda: _step(fn, case.x))
    if wait:
        for _ in range(FIRST_CALLS):
            _step(fn, case.x)
        losses.wait_for_compiled_kernels()
        _step(fn, case.x)
    return first * 1e3, _time(lambda: _step(fn, case.x)) * 1e3


def cold_first_call_ms(loss: str, threads: int | None, wait: bool) -> tuple[float, float]:
    """:func:`first_call_ms` in a fresh process whose inductor cache directory is empty."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache}
        command = [sys.executable, __file__, "--first-call", loss]
        if not wait:
            command.append("--quick")
        if threads:
            command += ["--threads", str(threads)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    first, steady = out.stdout.strip().splitlines()[-1].split()
    return float(first), float(steady)


def _fmt_mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def measure_group(
    cases: list[Case], rounds: dict[str, int], memory: bool, warmups: int
) -> list[dict[str, Any]]:
    """Measure ``cases`` in this process: one JSON-ready record per case."""
    records = []
    for case in cases:
        results, copy_s, copy_peak = measure(case, rounds[case.size], memory, warmups)
        records.append(
            {
                "loss": case.loss,
                "size": case.size,
                "ours": case.ours,
                "copy_s": copy_s,
                "copy_peak": copy_peak,
                "notes": case.notes,
                "results": [vars(r) for r in results],
            }
        )
    return records


def measure_in_processes(
    groups: list[list[str]], quick: bool, threads: int | None
) -> list[dict[str, Any]]:
    """:func:`measure_group` of each group of losses in a fresh process of its own.

    What ran before in a process moves a 16M step's time by up to 2x, for losskit and the peers
    alike (the same losskit ``dice`` step took 30-61 ms and kornia's 57-99 ms depending on the
    cases measured before it), so each loss's comparison gets a process that nothing else ran in.
    """
    records: list[dict[str, Any]] = []
    for group in groups:
        command = [sys.executable, __file__, "--only", ",".join(group), "--group-json"]
        if quick:
            command.append("--quick")
        if threads:
            command += ["--threads", str(threads)]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"measuring {', '.join(group)} failed:\n{out.stderr}")
        records.extend(json.loads(out.stdout.strip().splitlines()[-1]))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one round; focal, dice and tversky at 16M, the others smaller; one cold first call",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold first-call runs")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        type=lambda names: frozenset(names.split(",")),
        help="time these cases only (e.g. dice,tversky); their cold first calls too",
    )
    parser.add_argument("--first-call", metavar="LOSS", help=argparse.SUPPRESS)
    parser.add_argument("--group-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.first_call:
        print("{:.1f} {:.1f}".format(*first_call_ms(args.first_call, wait=not args.quick)))
        return
    sizes = QUICK_SIZES if args.quick else SIZES
    rounds = dict.fromkeys(sizes, 0) if args.quick else {"1M": 9, "16M": 4}
    memory = _can_measure_memory()
    if args.group_json:
        warmups = 1 if args.quick else FIRST_CALLS
        cases = build_cases(sizes, args.quick, args.only)
        print(json.dumps(measure_group(cases, rounds, memory, warmups)))
        return

    unknown = sorted((args.only or frozenset()) - set(CASE_NAMES))
    if unknown:
        parser.error(f"--only: no case named {', '.join(unknown)} (cases: {', '.join(CASE_NAMES)})")
    names = [name for name in CASE_NAMES if args.only is None or name in args.only]
    # --quick: one process for all (a fresh process costs seconds; its figures are a smoke check).
    groups = [names] if args.quick else [[name] for name in names]
    header = (
        "| loss | size | implementation | time (ms) | × copy floor | losskit speedup "
        "| peak MiB | × losskit peak |"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"copy floor = x.clone() of the logits; best of 1 + {rounds} rounds; "
        f"{'one process for all losses' if args.quick else 'a fresh process per loss'}\n"
    )
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    records: list[dict[str, object]] = []
    summary: dict[str, float] = {}
    notes: list[str] = []
    measured_cases = measure_in_processes(groups, args.quick, args.threads)
    for case in measured_cases:
        results = [Result(**r) for r in case["results"]]
        copy_s, copy_peak = case["copy_s"], case["copy_peak"]
        loss, size = case["loss"], case["size"]
        ours = next((r for r in results if r.impl == case["ours"]), None)
        print(
            f"| {loss} | {size} | x.clone() (copy floor) | {copy_s * 1e3:.1f} "
            f"| 1.00 | | {_fmt_mib(copy_peak)} | |"
        )
        for r in results:
            speedup = "" if ours is None or r is ours else f"{r.seconds / ours.seconds:.1f}×"
            mem_ratio = (
                f"{r.peak_mib / ours.peak_mib:.1f}"
                if ours is not None and ours.peak_mib and r.peak_mib is not None
                else ""
            )
            print(
                f"| {loss} | {size} | {r.impl} | {r.seconds * 1e3:.1f} "
                f"| {r.seconds / copy_s:.2f} | {speedup} | {_fmt_mib(r.peak_mib)} | {mem_ratio} |"
            )
            records.append(
                {
                    "loss": r.loss,
                    "size": r.size,
                    "impl": r.impl,
                    "ms": round(r.seconds * 1e3, 2),
                    "first_call_ms": round(r.first_call_s * 1e3, 1),
                    "x_copy_floor": round(r.seconds / copy_s, 3),
                    "peak_mib": None if r.peak_mib is None else round(r.peak_mib, 1),
                }
            )
        notes.extend(f"{loss} {size}: {note}" for note in case["notes"])
        if ours is not None:
            peers = [r for r in results if r is not ours]
            if peers:
                best = min(peers, key=lambda r: r.seconds)
                key = f"{loss}_{size}"
                summary[f"{key}_speedup_vs_best_peer"] = round(best.seconds / ours.seconds, 2)
                summary[f"{key}_vs_copy_floor"] = round(ours.seconds / copy_s, 2)
                if loss == "focal" and size == "16M":
                    summary["focal_speedup_vs_best_peer"] = round(best.seconds / ours.seconds, 2)
                    summary["focal_vs_copy_floor"] = round(ours.seconds / copy_s, 2)
                    summary["focal_best_peer"] = best.impl  # type: ignore[assignment]
            notes.append(
                f"{loss} {size}: losskit's first call {ours.first_call_s * 1e3:.0f} ms "
                "(compile, or a compiled-kernel cache load, and first-call value checks)"
            )
    at_16m = {k: v for k, v in summary.items() if k.endswith("_16M_speedup_vs_best_peer")}
    if at_16m:
        worst = min(at_16m, key=at_16m.__getitem__)
        summary["min_speedup_vs_best_peer"] = at_16m[worst]
        summary["min_speedup_row"] = worst.removesuffix("_speedup_vs_best_peer")  # type: ignore[assignment]
    at_1m = {k: v for k, v in summary.items() if k.endswith("_1M_speedup_vs_best_peer")}
    if at_1m:
        summary["min_speedup_vs_best_peer_1M"] = min(at_1m.values())
    measured = dict.fromkeys(
        case["loss"]
        for case in measured_cases
        if any(r["impl"] == case["ours"] for r in case["results"])
    )
    cold = {
        name: cold_first_call_ms(name, args.threads, wait=not args.quick)
        for name in (QUICK_COLD if args.quick else measured)
        if not args.no_cold and name in measured
    }
    if cold:
        worst_cold = max(cold, key=lambda name: cold[name][0])
        summary["max_first_call_ms_cold"] = cold[worst_cold][0]
        summary["max_first_call_loss"] = worst_cold  # type: ignore[assignment]
        stalls = {name: first - steady for name, (first, steady) in cold.items()}
        worst_stall = max(stalls, key=stalls.__getitem__)
        summary["max_first_call_stall_ms_cold"] = round(stalls[worst_stall], 1)
        summary["max_first_call_stall_loss"] = worst_stall  # type: ignore[assignment]
        notes.append(
            "first call in a fresh process, empty inductor cache, then a steady-state call (ms): "
            + ", ".join(
                f"{name} {first:.0f} / {steady:.0f}" for name, (first, steady) in cold.items()
            )
        )
        records.extend(
            {"loss": n, "first_call_ms_cold": first, "steady_ms": steady}
            for n, (first, steady) in cold.items()
        )
    for note in notes:
        print(f"- {note}")
    print(
        json.dumps(
            {
                **summary,
                "threads": torch.get_num_threads(),
                "memory_method": "VmHWM after malloc_trim + clear_refs" if memory else None,
                "results": records,
            }
        )
    )


if __name__ == "__main__":
    main()
