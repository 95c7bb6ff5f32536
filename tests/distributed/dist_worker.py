"""Scenarios for the distributed tests, run by spawned ranks and, as the reference, by the test
process alone. A module of its own so that spawned processes import it by name (the tests add
this folder to ``sys.path``)."""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import losskit as lk
from losskit.engine import distributed

WORLD = 2
GRADIENT_METHODS = ("upgrad", "mgda", "imtl_g", "cagrad", "aligned_mtl", "graddrop")
EQUAL_TO_FULL_BATCH = ("sum", "magnitude", "upgrad", "mgda", "imtl_g", "cagrad", "aligned_mtl")
SAMPLES = 40  # 5 optimizer steps of a global batch of 8
GLOBAL_BATCH = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Net(nn.Module):
    """A shared trunk, two heads."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.a = nn.Linear(8, 1)
        self.b = nn.Linear(8, 1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.trunk(batch["x"])
        return {"a": self.a(h).squeeze(-1), "b": self.b(h).squeeze(-1)}


class Pairs(Dataset[dict[str, Tensor]]):
    """``n`` samples whose two targets pull the trunk different ways."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.ya = self.x.sum(1) + 0.1 * torch.randn(n, generator=g)
        self.yb = 3.0 * self.x[:, 0] - self.x[:, 1] ** 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x[i], "ya": self.ya[i], "yb": self.yb[i]}


def make_criterion(model: Net, balancer: str) -> lk.Criterion:
    spec: Any = balancer
    if balancer in GRADIENT_METHODS:
        spec = lk.balancers.Gradient(balancer, shared=model.trunk)
    elif balancer.endswith("@features"):
        method = balancer.removesuffix("@features")
        spec = lk.balancers.Gradient(method, shared=model.trunk, level="features")
    elif balancer == "dwa":
        spec = lk.balancers.DWA(every=2)
    elif balancer == "gradnorm":
        spec = lk.balancers.GradNorm(shared=model.trunk[0], lr=0.05)
    elif balancer == "magnitude":
        spec = lk.balancers.Magnitude(warmup=3, beta=0.9)
    return lk.Criterion(
        {
            "a": lk.Term("mse", input="a", target="ya"),
            "b": lk.Term("l1", input="b", target="yb", weight=0.5),
        },
        balancer=spec,
    )


def fit(
    balancer: str = "sum",
    *,
    world: int = 1,
    accumulate: int = 1,
    samples: int = SAMPLES,
    epochs: int = 1,
    run_dir: Path | None = None,
    resume: Path | None = None,
    optimizer: str = "sgd",
    shuffle: bool = False,
    fsdp: bool = False,
    routed: bool = False,
    on_step: Callable[[lk.engine.Trainer], None] | None = None,
    desync: bool = False,
) -> tuple[lk.engine.Trainer, lk.engine.FitSummary]:
    """Train ``Net`` with a global batch of 8 split over ``world`` ranks and ``accumulate``."""
    torch.manual_seed(0)
    model = Net()
    crit = make_criterion(model, balancer)
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        fully_shard(model.trunk)
        fully_shard(model)
    params = [*model.parameters(), *crit.parameters()]
    opt: Any = (
        torch.optim.SGD(params, lr=0.1) if optimizer == "sgd" else torch.optim.Adam(params, 0.01)
    )
    routes = None
    if routed:  # two optimizers, each on its own keys (the trunk trains on "a" only)
        opt = {
            "a": torch.optim.SGD([*model.trunk.parameters(), *model.a.parameters()], lr=0.1),
            "b": torch.optim.SGD(model.b.parameters(), lr=0.1),
        }
        routes = {"a": ["a"], "b": ["b"]}
    if desync:  # a different random stream on every rank (a randomised aggregator must cope)
        torch.manual_seed(100 + (dist.get_rank() if dist.is_initialized() else 0))
    batch = GLOBAL_BATCH // world // accumulate
    g = torch.Generator().manual_seed(1)
    train = DataLoader(Pairs(samples), batch_size=batch, shuffle=shuffle, generator=g)
    val = DataLoader(Pairs(16, seed=5), batch_size=4)
    trainer = lk.engine.Trainer(
        model,
        crit,
        opt,
        routes=routes,
        accumulate=accumulate,
        run_dir=run_dir,
        progress=False,
        log_every=2,
    )
    if on_step is not None:
        first = next(iter(trainer.optimizers.values()))
        first.register_step_post_hook(lambda *_: on_step(trainer))
    summary = trainer.fit(train, val, epochs=epochs, resume=resume)
    return trainer, timeless(summary)


def timeless(summary: lk.engine.FitSummary) -> lk.engine.FitSummary:
    """The summary without the wall-clock means (``speed/step_s``, ``speed/samples_per_s``),
    which no two runs share; every other mean must match across world sizes."""
    timed = {"speed/step_s", "speed/samples_per_s"}
    summary.train = {k: v for k, v in summary.train.items() if k not in timed}
    return summary


def state(trainer: lk.engine.Trainer) -> dict[str, Any]:
    return {
        "params": {
            k: v.detach().clone() for k, v in distributed.full_state(trainer.model, [])[0].items()
        },
        "criterion": {
            k: v.detach().clone()
            for k, v in trainer.criterion.state_dict().items()
            if isinstance(v, Tensor)
        },
    }


# -- the spawned side ---------------------------------------------------------------------------
def trainer_scenarios(root: Path) -> dict[str, Any]:
    rank = dist.get_rank()
    out: dict[str, Any] = {"rank": rank}
    for balancer in EQUAL_TO_FULL_BATCH:
        run_dir = root / f"{balancer}-rank{rank}"
        trainer, summary = fit(balancer, world=WORLD, run_dir=run_dir)
        out[balancer] = {**state(trainer), "train": summary.train, "val": summary.val}
    trainer, summary = fit("sum", world=WORLD, accumulate=2)
    out["accumulate"] = {**state(trainer), "train": summary.train}
    trainer, summary = fit("sum", world=WORLD, accumulate=2, routed=True)
    out["routed"] = {**state(trainer), "train": summary.train}
    # Kill-and-resume: the "killed" scenario's ranks were SIGKILLed in the middle of epoch 2;
    # fresh processes resume from the last.pt rank 0 wrote at the end of epoch 1.
    whole, _ = fit("uncertainty", world=WORLD, epochs=2, optimizer="adam", shuffle=True)
    resumed, _ = fit(
        "uncertainty",
        world=WORLD,
        epochs=2,
        optimizer="adam",
        shuffle=True,
        resume=root / KILLED / "last.pt",
    )
    out["resume"] = {"whole": state(whole), "resumed": state(resumed)}
    return out


def balancer_scenarios(root: Path) -> dict[str, Any]:
    """20 optimizer steps per balancer: what each rank ends with."""
    out: dict[str, Any] = {}
    for balancer in ("magnitude", "uncertainty", "dwa", "gradnorm", "graddrop"):
        # 160 / 8 = 20 steps
        trainer, summary = fit(balancer, world=WORLD, samples=160, desync=balancer == "graddrop")
        probe = Pairs(4, seed=9)[0:4]  # type: ignore[index]
        with torch.no_grad():
            res = trainer.criterion(trainer.model(probe), probe)
        out[balancer] = {
            **state(trainer),
            "steps": summary.steps,
            "weights": torch.stack(list(res.weights.values())).detach(),
        }
    # Refused at construction, with the reason.
    model = Net()
    try:
        distributed.Replicas(model, lk.Criterion({"a": lk.Term("mse")}, balancer="random"))
    except lk.errors.ConfigError as exc:
        out["refused"] = str(exc)
    return out


FEATURE_LEVEL = ("upgrad@features", "mgda@features")


def feature_scenarios(root: Path) -> dict[str, Any]:
    """Feature-level aggregation under DDP: the all-reduced Gramian gives the full batch's."""
    out: dict[str, Any] = {}
    for balancer in FEATURE_LEVEL:
        trainer, summary = fit(balancer, world=WORLD)
        out[balancer] = {**state(trainer), "train": summary.train, "steps": summary.steps}
    return out


def fsdp_scenarios(root: Path) -> dict[str, Any]:
    """The same runs with an FSDP2-sharded model (trunk and whole model ``fully_shard``-ed)."""
    out: dict[str, Any] = {}
    for balancer, accumulate in (("sum", 1), ("magnitude", 2)):
        trainer, summary = fit(balancer, world=WORLD, accumulate=accumulate, fsdp=True)
        out[balancer] = {
            **state(trainer),
            "train": summary.train,
            "val": summary.val,
            "accumulate": accumulate,
        }
    kwargs: dict[str, Any] = {
        "world": WORLD,
        "optimizer": "adam",
        "shuffle": True,
        "fsdp": True,
    }
    whole, _ = fit("uncertainty", epochs=2, **kwargs)
    first_dir = root / f"fsdp-resume-{dist.get_rank()}"
    fit("uncertainty", epochs=1, run_dir=first_dir, **kwargs)
    dist.barrier()
    resumed, _ = fit("uncertainty", epochs=2, resume=root / "fsdp-resume-0" / "last.pt", **kwargs)
    out["resume"] = {"whole": state(whole), "resumed": state(resumed)}
    try:
        fit("upgrad", world=WORLD, fsdp=True)
    except lk.errors.ConfigError as exc:
        out["refused"] = str(exc)
    return out


KILLED = "killed-run"
KILL_AT_STEP = 7  # epoch 2 (5 optimizer steps per epoch), after epoch 1's checkpoint


def killed_scenario(root: Path) -> dict[str, Any]:
    """Train 2 epochs with a run folder; every rank SIGKILLs itself after optimizer step 7."""

    def die(trainer: lk.engine.Trainer) -> None:
        if trainer.global_step == KILL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    fit(
        "uncertainty",
        world=WORLD,
        epochs=2,
        optimizer="adam",
        shuffle=True,
        run_dir=root / KILLED,
        on_step=die,
    )
    return {"survived": True}


def guard_scenarios(root: Path) -> dict[str, Any]:
    """Review guards: a hand-written loop that forgets synchronize_gradients, DDP with unused
    parameters, an unwrapped Replicas, setup() on an existing group."""
    out: dict[str, Any] = {"setup_again": distributed.setup()}
    rank = dist.get_rank()
    batch = Pairs(8, seed=rank)[0:8]  # type: ignore[index]
    # A gradient balancer in a hand-written DDP loop without synchronize_gradients.
    torch.manual_seed(0)
    model = Net()
    crit = make_criterion(model, "upgrad")
    replicas = distributed.Replicas(model, crit)
    with replicas.micro_step(last=True):
        res = crit(replicas.model(batch), batch)
        res.backward()
    balancer = crit.balancer
    try:  # what the backward captured (the features' activations) is released
        res.backward()
        out["context_dropped"] = False
    except RuntimeError as exc:
        out["context_dropped"] = "already ran and released" in str(exc)
    out["pending"] = len(balancer._pending_results)  # type: ignore[attr-defined]
    try:
        crit.step()
    except lk.errors.LossKitError as exc:
        out["unsynchronized"] = str(exc)
    distributed.synchronize_gradients(crit, model.parameters())
    crit.step()  # nothing pending now
    out["trunk_grad"] = model.trunk[0].weight.grad.detach().clone()  # type: ignore[union-attr]
    # DDP: a term created disabled (automatic), a term disabled at run time (explicit option).
    for name, start, option in (("auto", False, None), ("runtime", True, True)):
        torch.manual_seed(0)
        model = Net()
        crit = lk.Criterion(
            {
                "a": lk.Term("mse", input="a", target="ya"),
                "b": lk.Term("mse", input="b", target="yb", enabled=start),
            }
        )
        replicas = distributed.Replicas(model, crit, find_unused_parameters=option)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            if step == 1 and start:
                crit.disable("b")
            res = crit(replicas.model(batch), batch)
            res.backward()
            opt.step()
            opt.zero_grad()
        out[name] = {
            "find_unused": replicas.model.find_unused_parameters,  # type: ignore[union-attr]
            "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        }
    plain = lk.Criterion({"a": lk.Term("mse", input="a", target="ya")})
    out["plain_find_unused"] = distributed.Replicas(Net(), plain).model.find_unused_parameters  # type: ignore[union-attr]
    unwrapped = Net()
    out["unwrapped"] = distributed.Replicas(unwrapped, plain, wrap=False).model is unwrapped
    return out


# -- partial labels: rank 0 on dataset A (keys a, c), rank 1 on dataset B (keys b, c) ----------
PARTIAL_STEPS = 4


class Heads(nn.Module):
    """A shared trunk, three heads: a (dataset A's label), b (dataset B's), c (both)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.heads = nn.ModuleDict({k: nn.Linear(8, 1) for k in "abc"})

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.trunk(batch["x"])
        return {k: head(h).squeeze(-1) for k, head in self.heads.items()}


def partial_batches(dataset: str, size: int) -> list[dict[str, Tensor]]:
    """``PARTIAL_STEPS`` batches of dataset A (labels a, c) or B (labels b, c)."""
    g = torch.Generator().manual_seed(0 if dataset == "A" else 1)
    batches = []
    for _ in range(PARTIAL_STEPS):
        x = torch.randn(size, 4, generator=g)
        batch = {"x": x, "yc": x.sum(1)}
        if dataset == "A":
            batch["ya"] = 2.0 * x[:, 0] + 1.0
        else:
            batch["yb"] = x[:, 1] ** 2 - 3.0
        batches.append(batch)
    return batches


def both_batches(size_a: int, size_b: int) -> list[dict[str, Tensor]]:
    """One process's batches: A's and B's concatenated, ``a``/``b`` labelled only on their
    own samples (masks ``ma``/``mb``; the other rows' targets are placeholders)."""
    out = []
    for a, b in zip(partial_batches("A", size_a), partial_batches("B", size_b)):
        out.append(
            {
                "x": torch.cat([a["x"], b["x"]]),
                "yc": torch.cat([a["yc"], b["yc"]]),
                "ya": torch.cat([a["ya"], torch.zeros(size_b)]),
                "yb": torch.cat([torch.zeros(size_a), b["yb"]]),
                "ma": torch.cat([torch.ones(size_a), torch.zeros(size_b)]),
                "mb": torch.cat([torch.zeros(size_a), torch.ones(size_b)]),
            }
        )
    return out


def partial_criterion(balancer: str, masked: bool, optional_c: bool = False) -> lk.Criterion:
    """Optional ``a``/``b`` (each rank lacks one), or the same keys masked (one process)."""

    def head(key: str) -> lk.Term:
        if masked:
            return lk.Term("mse", input=key, target=f"y{key}", mask=f"m{key}")
        return lk.Term("mse", input=key, target=f"y{key}", optional=True)

    spec: Any = lk.balancers.Magnitude(warmup=2, beta=0.9) if balancer == "magnitude" else "sum"
    c = lk.Term("mse", input="c", target="yc", optional=optional_c)
    terms = {"a": head("a"), "b": head("b"), "c": c}
    return lk.Criterion(terms, balancer=spec)


def fit_partial(
    balancer: str, batches: list[dict[str, Tensor]], masked: bool, optional_c: bool = False
) -> tuple[lk.engine.Trainer, lk.engine.FitSummary]:
    """Train ``Heads`` on ``batches`` (a list: under DDP, this rank's share as given)."""
    torch.manual_seed(0)
    model = Heads()
    crit = partial_criterion(balancer, masked, optional_c)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = lk.engine.Trainer(model, crit, opt, progress=False, log_every=2)
    return trainer, timeless(trainer.fit(batches, epochs=1))


def partial_scenarios(root: Path) -> dict[str, Any]:
    """The issue's runs, a tracker across ranks with different optional keys, and criteria
    with different keys."""
    rank = dist.get_rank()
    out: dict[str, Any] = {}
    for name, balancer, sizes in (
        ("sum", "sum", (4, 4)),
        ("magnitude", "magnitude", (4, 4)),
        ("uneven", "sum", (3, 5)),
    ):
        batches = partial_batches("AB"[rank], sizes[rank])
        trainer, summary = fit_partial(balancer, batches, masked=False)
        out[name] = {**state(trainer), "train": summary.train, "steps": summary.steps}
    # Rank 1's batches carry no label at all (every step skipped there): it still joins the
    # collectives, and the update is one process's on dataset A alone.
    batches = partial_batches("A", 4)
    if rank == 1:
        batches = [{"x": b["x"]} for b in partial_batches("B", 4)]
    trainer, summary = fit_partial("magnitude", batches, masked=False, optional_c=True)
    out["skipped"] = {**state(trainer), "skipped": trainer.criterion.skipped_steps}
    # The Tracker given the criterion: interval 1, rank 0 logs a and c, rank 1 b and c;
    # interval 2, both log c alone (a and b stay unlogged).
    crit = partial_criterion("sum", masked=False)
    tracker = lk.tracking.Tracker(criterion=crit)
    size = 2 + 2 * rank
    x = torch.zeros(size)
    label = {"ya": torch.full((size,), 1.0)} if rank == 0 else {"yb": torch.full((size,), 2.0)}
    with torch.no_grad():
        res = crit({"a": x, "b": x, "c": x}, {"yc": torch.full((size,), 1.0 + rank), **label})
        tracker.update(res, batch_size=size)
        first = tracker.flush()[0].values
        res = crit({"a": x, "b": x, "c": x}, {"yc": torch.full((size,), 3.0)})
        tracker.update(res, batch_size=size)
        second = tracker.flush()[0].values
    out["tracker"] = {"first": first, "second": second}
    # Criteria with different configured keys: the Tracker's flush (plain terms) and the
    # criterion's first training call (optional terms) refuse, with the ranks' keys.
    for kind, optional in (("plain", False), ("optional", True)):
        own = "ab"[rank]
        crit = lk.Criterion(
            {
                own: lk.Term("mse", input="x", target="y", optional=optional),
                "c": lk.Term("l1", input="x", target="y"),
            }
        )
        tracker = lk.tracking.Tracker(criterion=crit)
        outputs = {"x": torch.ones(2, requires_grad=True)}
        try:
            tracker.update(crit(outputs, {"y": torch.zeros(2)}))
            tracker.flush()
            out[kind] = "no error"
        except lk.errors.RankMismatchError as exc:
            out[kind] = str(exc)
    return out


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "trainer": trainer_scenarios,
    "balancers": balancer_scenarios,
    "fsdp": fsdp_scenarios,
}
SCENARIOS_KILLED = {"killed": killed_scenario}
SCENARIOS.update(SCENARIOS_KILLED)
SCENARIOS["all"] = lambda root: {
    n: run(root)
    for n, run in SCENARIOS.items()
    if n not in ("all", "killed", "guards", "partial", "features")
}
SCENARIOS["guards"] = guard_scenarios  # launched on its own by test_guards.py
SCENARIOS["partial"] = partial_scenarios  # launched on its own by test_partial_labels_distributed
SCENARIOS["features"] = feature_scenarios  # launched on its own by test_features_distributed


def worker(rank: int, name: str, root: str, port: int) -> None:
    # What torchrun sets: the Trainer joins the group from these.
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    path = Path(root)
    try:
        distributed.setup()
        result: dict[str, Any] = SCENARIOS[name](path)
    except Exception:
        result = {"error": traceback.format_exc()}
    torch.save(result, path / f"{name}-{rank}.pt")
    if dist.is_initialized():
        # Every rank past its last collective before teardown: gloo aborts (SIGABRT) a rank
        # whose peer destroyed the group while it was still tearing down.
        dist.barrier()
        dist.destroy_process_group()


def launch(name: str, root: Path, timeout: float = 150.0) -> list[dict[str, Any]]:
    """Run scenario ``name`` on ``WORLD`` spawned ranks; a hang past ``timeout`` fails."""
    context = mp.spawn(worker, args=(name, str(root), free_port()), nprocs=WORLD, join=False)
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                raise TimeoutError(f"the distributed scenario {name!r} hung for {timeout} s")
    except mp.ProcessExitedException as exc:
        if name != "killed" or exc.signal_name != "SIGKILL":
            raise
        return []  # join() has ended the other rank
    if name == "killed":
        raise AssertionError("the ranks of the killed scenario were not killed")
    results = [torch.load(root / f"{name}-{r}.pt", weights_only=False) for r in range(WORLD)]
    for r, result in enumerate(results):
        if "error" in result:
            raise AssertionError(f"rank {r} failed:\n{result['error']}")
    return results
