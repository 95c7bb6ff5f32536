"""Overhead of the keyed Criterion against the same training step written by hand.

Both variants train the same three-headed MLP (cross-entropy, Huber, MSE) with Adam and log
every term every step: the Criterion through ``res.log()``, the hand-written step through a dict
of detached tensors (what a careful user writes; ``.item()`` would cost far more).

Both variants step the same model and optimizer: where a model's tensors land in memory shifts
its step time by 1-3% on this CPU (two hand-written copies on separate models measured 0.97-1.03
against each other), which separate models would count as overhead or gain. Several such
instances (``--instances``) average what remains of it. A second hand-written step on the same
instances gives the noise floor (its ratio to the first should be 1).

The groups take turns in short blocks (``--block`` steps, cycling over the instances; the
order reversed every round) and every step is timed on its own. The first step of a block is
dropped: it runs after another group's code, with the interpreter's and the CPU's caches cold
for its own, which a training loop, stepping the same code again and again, never sees -- and
which, without the drop, fell on the Criterion more than on the hand-written step, whose copy
(the noise floor) often ran just before it. The figure is the ratio of the groups' median
steps: taking turns this often, both groups see the same machine (a shared host's load moved
the step time of this benchmark by up to 2x over minutes), and a preempted step moves one
sample, not a median. The spread is the quartiles of the same ratio over ten consecutive
slices of the run.

A third group steps the same models through ``torch.compile(criterion)`` (the criterion has one
forward path; compiling it is how the last microseconds are bought), reported as
``ratio_compiled``.

    python benchmarks/criterion_overhead.py [--quick] [--no-compile]

The last line printed is a JSON object: {"ratio": Criterion time / hand-written time,
"ratio_compiled": compiled Criterion time / hand-written time, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import losskit as lk


class ThreeHeads(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.cls = nn.Linear(hidden, classes)
        self.reg = nn.Linear(hidden, 1)
        self.recon = nn.Linear(hidden, features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = torch.relu(self.trunk(x))
        return {"logits": self.cls(h), "value": self.reg(h).squeeze(-1), "recon": self.recon(h)}


def _criterion(variant: str = "catalogue") -> lk.Criterion:
    """The benchmark's criterion; the other variants locate its cost (``--ablation``)."""
    losses: dict[str, Any] = {"cls": "cross_entropy", "reg": "huber", "recon": "mse"}
    options: dict[str, Any] = {}
    if variant == "check_off":
        options = {"check": "off"}
    elif variant == "torch_nn":  # loss modules without a contract
        losses = {"cls": nn.CrossEntropyLoss(), "reg": nn.HuberLoss(), "recon": nn.MSELoss()}
    elif variant == "functions":  # no loss module at all
        losses = {"cls": F.cross_entropy, "reg": F.huber_loss, "recon": F.mse_loss}
    return lk.Criterion(
        {
            "cls": lk.Term(losses["cls"], input="logits", target="label", **options),
            "reg": lk.Term(losses["reg"], input="value", target="y", weight=0.5, **options),
            "recon": lk.Term(losses["recon"], input="recon", target="x", weight=0.1, **options),
        },
        check=options.get("check", "first"),
    )


ABLATION = ("check_off", "torch_nn", "functions")


def make_steps(
    batch: dict[str, Tensor],
    features: int,
    hidden: int,
    classes: int,
    compiled: bool,
    ablation: bool = False,
) -> dict[str, Callable[[], dict[str, Tensor]]]:
    """A hand-written step and Criterion steps (eager, compiled), all training one model."""
    torch.manual_seed(0)
    model = ThreeHeads(features, hidden, classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = _criterion()

    def by_hand() -> dict[str, Tensor]:
        out = model(batch["x"])
        cls = F.cross_entropy(out["logits"], batch["label"])
        reg = F.huber_loss(out["value"], batch["y"])
        recon = F.mse_loss(out["recon"], batch["x"])
        total = cls + 0.5 * reg + 0.1 * recon
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {
            "loss": total.detach(),
            "loss/cls": cls.detach(),
            "loss/reg": reg.detach(),
            "loss/recon": recon.detach(),
        }

    def stepping(
        criterion: Callable[..., lk.LossResult], owner: lk.Criterion
    ) -> Callable[[], dict[str, Tensor]]:
        def with_criterion() -> dict[str, Tensor]:
            res = criterion(model(batch["x"]), batch)
            opt.zero_grad(set_to_none=True)
            res.backward()
            opt.step()
            owner.step()
            return res.log()

        return with_criterion

    steps = {"hand": by_hand, "criterion": stepping(crit, crit)}
    if compiled:
        other = _criterion()
        steps["compiled"] = stepping(torch.compile(other), other)
    if ablation:
        for variant in ABLATION:
            own = _criterion(variant)
            steps[variant] = stepping(own, own)
    return steps


def _timed(step: Callable[[], dict[str, Tensor]]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 1 min)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--instances", type=int, default=4, help="instances per variant")
    parser.add_argument("--rounds", type=int, help="rounds (default 500, --quick 150)")
    parser.add_argument("--block", type=int, default=9, help="steps per group and round")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled criterion")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also step variants that locate the cost: check='off', torch.nn losses, functions",
    )
    args = parser.parse_args()
    rounds = args.rounds or (150 if args.quick else 500)
    features, classes = 32, 10
    g = torch.Generator().manual_seed(0)
    batch = {
        "x": torch.randn(args.batch, features, generator=g),
        "label": torch.randint(0, classes, (args.batch,), generator=g),
        "y": torch.randn(args.batch, generator=g),
    }
    compiled = not args.no_compile
    instances = [
        make_steps(batch, features, args.hidden, classes, compiled, args.ablation)
        for _ in range(args.instances)
    ]
    groups = {
        "hand": [i["hand"] for i in instances],
        "criterion": [i["criterion"] for i in instances],
        "hand (copy)": [i["hand"] for i in instances],
    }
    if compiled:
        groups["compiled"] = [i["compiled"] for i in instances]
    if args.ablation:
        for variant in ABLATION:
            groups[variant] = [i[variant] for i in instances]
    for steps in groups.values():  # warm-up, past the criterion's synchronous first checks
        for step in steps:
            for _ in range(25):
                step()
    times: dict[str, list[float]] = {name: [] for name in groups}
    for index in range(rounds):
        order = list(groups) if index % 2 == 0 else list(reversed(groups))
        for name in order:
            steps = groups[name]
            block = [_timed(steps[i % len(steps)]) for i in range(args.block)]
            times[name].extend(block[1:])  # the first ran with another group's caches

    def ratio(name: str, lo: int = 0, hi: int = len(times["hand"])) -> float:
        return statistics.median(times[name][lo:hi]) / statistics.median(times["hand"][lo:hi])

    overall, noise = ratio("criterion"), ratio("hand (copy)")
    width = len(times["hand"]) // 10
    quartiles = statistics.quantiles(
        [ratio("criterion", i * width, (i + 1) * width) for i in range(10)], n=4
    )
    hand = statistics.median(times["hand"])
    ours = statistics.median(times["criterion"])
    print(f"{'variant':<14}{'median step (us)':>18}")
    for name in groups:
        print(f"{name:<14}{statistics.median(times[name]) * 1e6:>18.1f}")
    print(
        f"ratio criterion/hand (median steps, {rounds} rounds of {args.block}-step blocks, "
        f"{args.instances} instances each): {overall:.3f} [quartiles over slices "
        f"{quartiles[0]:.3f}-{quartiles[2]:.3f}] (target <= 1.05); noise floor hand copy/hand "
        f"{noise:.3f}"
    )
    compiled_ratio = ratio("compiled") if compiled else None
    if compiled_ratio is not None:
        print(f"ratio torch.compile(criterion)/hand: {compiled_ratio:.3f}")
    print(
        json.dumps(
            {
                "ratio": round(overall, 4),
                "ratio_q1": round(quartiles[0], 4),
                "ratio_q3": round(quartiles[2], 4),
                "ratio_compiled": None if compiled_ratio is None else round(compiled_ratio, 4),
                **{
                    f"ratio_{variant}": round(ratio(variant), 4)
                    for variant in (ABLATION if args.ablation else ())
                },
                "noise_floor": round(noise, 4),
                "hand_step_us": round(hand * 1e6, 1),
                "criterion_step_us": round(ours * 1e6, 1),
                "batch": args.batch,
                "hidden": args.hidden,
                "instances": args.instances,
                "rounds": rounds,
                "block": args.block,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
