"""Training on several processes: set-up from ``torchrun``, the wrapped model, sharded loaders,
gradient synchronisation once per optimizer step, and the rank-0 guard.

The :class:`~losskit.engine.Trainer` uses :class:`Replicas` once ``torch.distributed`` is up (or
``torchrun`` started the process); a hand-written loop, a Lightning module or an Accelerate loop
uses :func:`synchronize_gradients` before ``optimizer.step()``. Two ways of reducing gradients:

* **DDP's** (a plain or loss-level balanced total, one optimizer): the model is wrapped in
  ``DistributedDataParallel`` and its all-reduce runs in the backward pass of the last
  micro-batch of an accumulation window only (``no_sync`` before it).
* **explicit** (a gradient-level balancer, or several optimizers with routes, which call
  backward more than once per step or through ``autograd.grad``): every micro-batch runs under
  ``no_sync``; at the end of the window the per-key gradients of the shared parameters are
  averaged over the ranks and aggregated once, and every other gradient is averaged with one
  coalesced all-reduce.

Either way the learnable parameters of the criterion (uncertainty weighting's log-variances, ...)
have their gradients averaged too, so every rank applies the same update.

Example::

    >>> import torch, losskit as lk
    >>> from losskit.engine import distributed
    >>> distributed.world(), distributed.is_main()   # a single process
    (1, True)
    >>> model = torch.nn.Linear(2, 1)
    >>> distributed.Replicas(model, lk.Criterion({"a": lk.Term("mse")})).model is model
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler

from losskit._dist import flat_all_reduce_mean, initialized, is_main, world
from losskit.balancers import SynchronizedBalancer, capabilities
from losskit.criterion import Criterion
from losskit.errors import ConfigError

__all__ = [
    "Replicas",
    "default_backend",
    "full_state",
    "is_fsdp",
    "is_main",
    "is_wrapped",
    "load_full_state",
    "rank_device",
    "setup",
    "synchronize_gradients",
    "unwrap",
    "world",
]


def default_backend(cuda: bool) -> str:
    """The process-group backend :func:`setup` picks: ``gloo`` for CPU tensors and, with CUDA,
    ``nccl`` for CUDA tensors (``"cpu:gloo,cuda:nccl"``), so CPU collectives (the sampler seed,
    DDP's broadcast of CPU parameters) work on a GPU host too.

    Example::

        >>> default_backend(cuda=True), default_backend(cuda=False)
        ('cpu:gloo,cuda:nccl', 'gloo')
    """
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


def setup(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes, unless one exists; True when this call
    created it (the caller then destroys it with ``torch.distributed.destroy_process_group``).

    ``torchrun`` (and ``accelerate launch``) set ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; with ``WORLD_SIZE`` above 1 the default group is initialised with
    ``backend``, or :func:`default_backend` (``gloo`` for CPU tensors, plus ``nccl`` for CUDA
    tensors when CUDA is available), and each process takes the GPU of its ``LOCAL_RANK``.
    """
    if initialized():
        return False
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend or default_backend(cuda))
    return True


def rank_device(device: torch.device) -> torch.device:
    """``device``, or this rank's GPU (set by :func:`setup`) for an index-less ``cuda`` under
    several processes, where ``cuda`` alone would put every rank on GPU 0.

    Example::

        >>> rank_device(torch.device("cpu"))
        device(type='cpu')
    """
    if world() > 1 and str(device) == "cuda":  # no index
        return torch.device("cuda", torch.cuda.current_device())
    return device


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` was sharded in place with FSDP2's ``fully_shard``."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch builds without distributed
        return False
    return isinstance(model, FSDPModule)


def is_wrapped(model: nn.Module) -> bool:
    """Whether ``model`` is already a DDP wrapper or an FSDP2 module."""
    return isinstance(model, DistributedDataParallel) or is_fsdp(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The module DDP wraps (FSDP2 shards in place: the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def leaves_parameters_unused(criterion: Criterion, optimizers: int) -> bool:
    """Whether DDP needs ``find_unused_parameters=True`` from the start: a term that starts
    disabled, an optional term (absent from a batch without its labels, it leaves its head
    without a gradient), or several optimizers (each route's backward reaches only its own
    heads).

    Example::

        >>> import losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse", input="a", target="a", optional=True)})
        >>> leaves_parameters_unused(crit, optimizers=1)
        True
    """
    return optimizers > 1 or any(
        not getattr(term, "enabled_at_start", True) or getattr(term, "optional", False)
        for term in criterion.terms.values()
    )


def _explicit(criterion: Criterion, optimizers: int) -> bool:
    return optimizers > 1 or capabilities(criterion.balancer).synchronize


class Replicas:
    """The distributed side of one training run: the wrapped model, loaders, gradient sync.

    Single-process, everything here is the identity: ``model`` is the model, loaders are
    unchanged and the contexts do nothing.

    Args:
        model: the module to train (wrapped in DDP unless it already is, or is FSDP2, or
            ``wrap`` is False).
        criterion: its criterion (its balancer decides how gradients are reduced).
        optimizers: how many optimizers step per window (several: explicit reduction).
        find_unused_parameters: DDP's option of that name; None (automatic) turns it on when a
            term starts disabled or several optimizers step routes (either leaves parameters
            without a gradient). Give True when terms are disabled at run time
            (``criterion.disable(k)``): DDP otherwise fails at the next step.
        wrap: False keeps ``model`` as given (a model an integration's framework prepared:
            Accelerate's DDP, FSDP or DeepSpeed engine must not be wrapped again).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: Criterion,
        optimizers: int = 1,
        *,
        find_unused_parameters: bool | None = None,
        wrap: bool = True,
    ) -> None:
        self.world = world()
        self.criterion = criterion
        self.explicit = self.world > 1 and _explicit(criterion, optimizers)
        # Learnable loss weights (or a gradient balancer) need a reduction of their own.
        self._criterion_reduces = capabilities(criterion.balancer).synchronize or any(
            p.requires_grad for p in criterion.parameters()
        )
        self._loaders: dict[int, DataLoader[Any]] = {}
        if self.world > 1:
            _refuse_unsupported(model, criterion, optimizers)
        if self.world == 1 or not wrap or is_wrapped(model):
            self.model = model
        else:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            ids = [device.index] if device.type == "cuda" else None
            unused = (
                find_unused_parameters
                if find_unused_parameters is not None
                else leaves_parameters_unused(criterion, optimizers)
            )
            self.model = DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=unused
            )

    def loader(self, loader: Iterable[Any], epoch: int) -> Iterable[Any]:
        """This rank's share of ``loader`` for ``epoch``.

        A ``DataLoader`` over a map-style dataset is rebuilt once with a ``DistributedSampler``
        (shuffled when the original shuffled; same batch size per process, collate function and
        workers) and told the epoch with ``set_epoch``. A loader that already has a
        ``DistributedSampler`` only gets ``set_epoch``. Any other iterable is used as given: it
        must already yield this rank's share.
        """
        if self.world == 1 or not isinstance(loader, DataLoader):
            return loader
        sharded = self._loaders.get(id(loader))
        if sharded is None:
            sharded = loader if isinstance(loader.sampler, DistributedSampler) else _shard(loader)
            self._loaders[id(loader)] = sharded
        sampler = sharded.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        return sharded

    def micro_step(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """The context of one micro-batch's forward and backward: no gradient all-reduce unless
        it is the ``last`` of its window under DDP's reduction (never under the explicit one)."""
        if self.world == 1 or (last and not self.explicit):
            return contextlib.nullcontext()
        if isinstance(self.model, DistributedDataParallel):
            return self.model.no_sync()
        if is_fsdp(self.model):
            return _fsdp_no_sync(self.model)
        return contextlib.nullcontext()

    def synchronize(self, params: Sequence[Tensor]) -> None:
        """After the window's last backward, before the optimizer steps: finish the reduction."""
        if self.world == 1:
            return
        if not self.explicit and not self._criterion_reduces:
            return  # DDP reduced every gradient; the criterion has nothing to average
        synchronize_gradients(self.criterion, params if self.explicit else ())


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def _shard(loader: DataLoader[Any]) -> DataLoader[Any]:
    if isinstance(loader.dataset, IterableDataset):
        raise ConfigError(
            "under torch.distributed the Trainer shards a DataLoader through a DistributedSampler, "
            "which an IterableDataset cannot take: make the dataset yield this rank's share "
            "(torch.distributed.get_rank()) and pass an iterable that is not a DataLoader, or "
            "use a map-style dataset"
        )
    if loader.batch_size is None:
        raise ConfigError(
            "under torch.distributed the Trainer rebuilds the DataLoader with a "
            "DistributedSampler and needs its batch_size; this one has a custom batch_sampler: "
            "give it a DistributedSampler yourself"
        )
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    if isinstance(loader.sampler, RandomSampler) and loader.sampler.generator is not None:
        seed = int(torch.randint(2**62, (), generator=loader.sampler.generator).item())
    # Every rank must draw the same permutation: rank 0's seed wins.
    seed_tensor = torch.tensor([seed], dtype=torch.int64)
    dist.broadcast(seed_tensor, src=0)
    sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset,
        shuffle=isinstance(loader.sampler, RandomSampler),
        seed=int(seed_tensor.item()),
        drop_last=loader.drop_last,
    )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers,
    )


def _name(balancer: object) -> str:
    """How errors name a balancer: its registry name when it has one, else its class."""
    return repr(getattr(balancer, "method", None) or type(balancer).__name__)


def _refuse_unsupported(model: nn.Module, criterion: Criterion, optimizers: int) -> None:
    balancer = criterion.balancer
    declared = capabilities(balancer)
    if is_fsdp(model) and not declared.fsdp_safe:
        raise ConfigError(
            f"the {_name(balancer)} balancer cannot run on an FSDP2-sharded model: it needs "
            "per-key gradients of the shared parameters on every rank, and FSDP2 keeps "
            "1/world of each parameter per rank and reduce-scatters gradients in its own "
            "backward hooks. Use DDP (the Trainer's default for an unwrapped model) for it, or "
            "a loss-level balancer (sum, magnitude, uncertainty, dwa) with FSDP2"
        )
    if is_fsdp(model) and optimizers > 1:
        raise ConfigError(
            "several optimizers with routes compute each route's gradient with autograd.grad, "
            "which bypasses FSDP2's reduce-scatter hooks: use DDP (pass the unwrapped model) "
            "for routed training"
        )
    if not declared.rank_consistent:
        raise ConfigError(
            f"the {_name(balancer)} balancer draws its weights from each process's generator, "
            "so ranks would apply different weights; under torch.distributed use another balancer "
            "(or seed every rank identically and draw the weights yourself)"
        )


def _owner(model: nn.Module, extra: nn.Module | None) -> nn.Module:
    # DCP keys optimizer state by the parameters' names in one module: with the criterion's
    # learnable parameters in the optimizer, a container of both.
    if extra is None or not any(True for _ in extra.parameters()):
        return model
    return nn.ModuleDict({"model": model, "criterion": extra})


def full_state(
    model: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    extra: nn.Module | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The model's and optimizers' state dicts, whole, for a checkpoint written by rank 0.

    For an FSDP2 model they come from ``torch.distributed.checkpoint.state_dict`` with full
    (unsharded) tensors gathered to rank 0's CPU (other ranks get empty dicts): a collective, so
    every rank must call it. Otherwise they are the local state dicts of the unwrapped model.
    ``extra`` holds parameters the optimizers step besides the model's (the criterion's).
    """
    if not is_fsdp(model):
        return unwrap(model).state_dict(), [o.state_dict() for o in optimizers]
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    owner = _owner(model, extra)
    optim_states = [get_optimizer_state_dict(owner, o, options=options) for o in optimizers]
    return model_state, optim_states


def load_full_state(
    model: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    model_state: dict[str, Any],
    optim_states: Sequence[dict[str, Any]],
    extra: nn.Module | None = None,
) -> None:
    """Put back what :func:`full_state` returned (every rank loads the whole state)."""
    if not is_fsdp(model):
        unwrap(model).load_state_dict(model_state)
        for optimizer, state in zip(optimizers, optim_states):
            optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    owner = _owner(model, extra)
    for optimizer, state in zip(optimizers, optim_states):
        set_optimizer_state_dict(owner, optimizer, state, options=options)


def synchronize_gradients(criterion: Criterion, params: Iterable[Tensor] = ()) -> None:
    """Finish an optimizer step's gradient reduction across the ranks (call before
    ``optimizer.step()``, once per step, on every rank).

    With a gradient-level balancer, the per-key gradients of the shared parameters gathered since
    the last call are averaged over the ranks and aggregated once, so every rank writes the same
    update, equal to one process's on the global batch. The gradients of ``params`` (give the
    model's parameters when no DDP wrapper reduces them, as with a gradient balancer) and of the
    criterion's own learnable parameters are averaged with one coalesced all-reduce. A parameter
    without a gradient on some rank counts as zero there. Single-process it only aggregates
    what a gradient balancer deferred (nothing by default).

    Example::

        >>> import torch, losskit as lk
        >>> crit = lk.Criterion({"a": lk.Term("mse")})
        >>> synchronize_gradients(crit)   # single process: nothing to do
    """
    balancer = criterion.balancer
    shared: set[int] = set()
    if capabilities(balancer).synchronize:
        shared = {id(p) for p in cast(SynchronizedBalancer, balancer).synchronize()}
    if world() == 1:
        return
    seen: set[int] = set(shared)
    grads: list[Tensor] = []
    for p in [*params, *criterion.parameters()]:
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat_all_reduce_mean(grads)
