"""Cost of logging with the Tracker against the usual hand-written ``.item()`` logging.

Both variants train the same small MLP (five heads, a five-term Criterion, Adam) on the CPU:

- ``hand``: every step, ``res[key].item()`` for each of the 5 keys, summed with the batch size
  into a dict of floats; every ``--every`` steps the interval means go to a JSONL file as one
  line (written and flushed).
- ``tracker``: every step, ``tracker.update(res, batch_size=...)`` (11 values: the total, 5
  terms, 5 weights); every ``--every`` steps the Tracker flushes to its JSONL sink (interval
  means and every step's 11 values, flushed to the OS, fsync'ed at most every 10 s) and runs
  the criterion's deferred non-finite check.

Both variants train one shared model (so only their logging differs). Blocks of steps (whole
intervals) alternate between the variants in one process, with the hand-written loop run twice
per round ("hand again": its ratio to "hand" is the noise floor); the median of the per-round
time ratios is reported, so drifts in machine load cancel. The ratio of the process's
CPU time is reported next to it (``ratio_cpu``): it does not count the time other processes hold
the cores, and so does the ratio of each variant's fastest tenth of blocks (``ratio_fastest``):
both stay meaningful on a shared machine.

    python benchmarks/tracking.py [--quick] [--threads N]

The last line printed is a JSON object: {"ratio": Tracker time / hand-written time, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

import losskit as lk
from losskit.tracking import Tracker, sinks

KEYS = ("cls", "reg", "recon", "aux", "l2")


class FiveHeads(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.cls = nn.Linear(hidden, classes)
        self.reg = nn.Linear(hidden, 1)
        self.recon = nn.Linear(hidden, features)
        self.aux = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.trunk(x)
        return {
            "logits": self.cls(h),
            "value": self.reg(h).squeeze(-1),
            "recon": self.recon(h),
            "aux": self.aux(h).squeeze(-1),
            "h": h,
        }


def make_criterion() -> lk.Criterion:
    return lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("huber", input="value", target="y", weight=0.5),
            "recon": lk.Term("mse", input="recon", target="x", weight=0.1),
            "aux": lk.Term("l1", input="aux", target="y", weight=0.2),
            "l2": lk.Term(lambda out, batch: out["h"].pow(2).mean(), weight=1e-4),
        }
    )


def make_loops(
    batch: dict[str, Tensor], hidden: int, classes: int, every: int, run_dir: Path
) -> dict[str, Callable[[int], None]]:
    """The variants train one shared model, optimizer and criterion, so that they differ in
    their logging alone (two model instances can differ in speed by their memory layout)."""
    features = batch["x"].shape[1]
    size = batch["x"].shape[0]
    torch.manual_seed(0)
    model = FiveHeads(features, hidden, classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = make_criterion()

    def train_step() -> lk.LossResult:
        res = crit(model(batch["x"]), batch)
        opt.zero_grad(set_to_none=True)
        res.backward()
        opt.step()
        crit.step()
        return res

    def by_hand(name: str) -> Callable[[int], None]:
        log = (run_dir / f"{name}.jsonl").open("a")
        sums = dict.fromkeys(KEYS, 0.0)
        seen = [0, 0]  # steps, samples

        def loop(steps: int) -> None:
            for _ in range(steps):
                res = train_step()
                for key in KEYS:
                    sums[key] += res[key].item() * size
                seen[0] += 1
                seen[1] += size
                if seen[0] % every == 0:
                    means = {f"loss/{k}": v / seen[1] for k, v in sums.items()}
                    log.write(json.dumps({"step": seen[0], **means}) + "\n")
                    log.flush()
                    sums.update(dict.fromkeys(KEYS, 0.0))
                    seen[1] = 0

        return loop

    tracker = Tracker([sinks.JSONL(run_dir / "tracker")], every=every, criterion=crit)

    def tracked(steps: int) -> None:
        for _ in range(steps):
            tracker.update(train_step(), batch_size=size)

    # "hand again" is the hand-written loop a second time: its ratio to "hand" is the noise floor.
    return {"hand": by_hand("hand"), "tracker": tracked, "hand again": by_hand("again")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 1 min)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--every", type=int, default=50, help="steps between writes")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rounds = 30 if args.quick else 150
    steps = 2 * args.every  # whole intervals per block: each flush lands in its own block
    features, classes = 32, 10
    g = torch.Generator().manual_seed(0)
    batch = {
        "x": torch.randn(args.batch, features, generator=g),
        "label": torch.randint(0, classes, (args.batch,), generator=g),
        "y": torch.randn(args.batch, generator=g),
    }
    with tempfile.TemporaryDirectory() as tmp:
        loops = make_loops(batch, args.hidden, classes, args.every, Path(tmp))
        for loop in loops.values():  # warm-up
            loop(2 * steps)
        times: dict[str, list[float]] = {name: [] for name in loops}
        cpu: dict[str, list[float]] = {name: [] for name in loops}
        for index in range(rounds):
            # Adjacent blocks in rotating order: each round's ratios see the same load.
            names = list(loops)
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                loops[name](steps)
                times[name].append((time.perf_counter() - start) / steps)
                cpu[name].append((time.process_time() - start_cpu) / steps)
    ratios = [t / h for t, h in zip(times["tracker"], times["hand"])]
    ratio = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    ratio_cpu = statistics.median(t / h for t, h in zip(cpu["tracker"], cpu["hand"]))
    ratio_null = statistics.median(a / h for a, h in zip(times["hand again"], times["hand"]))
    # Load from other processes only ever adds time: the fastest tenth of each variant's blocks
    # is the least disturbed estimate on a busy machine.
    fastest = {k: statistics.quantiles(v, n=10)[0] for k, v in times.items()}
    ratio_fastest = fastest["tracker"] / fastest["hand"]
    hand = statistics.median(times["hand"])
    ours = statistics.median(times["tracker"])
    print(f"{'variant':<12}{'median step (us)':>18}{'fastest tenth (us)':>20}")
    for name, values in times.items():
        print(f"{name:<12}{statistics.median(values) * 1e6:>18.1f}{fastest[name] * 1e6:>20.1f}")
    print(
        f"ratio tracker/hand (median of {rounds} paired rounds of {steps} steps): {ratio:.3f} "
        f"[quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}] (target <= 1.02); "
        f"CPU time ratio {ratio_cpu:.3f}; fastest-tenth ratio {ratio_fastest:.3f}; "
        f"noise floor (hand again / hand) {ratio_null:.3f}"
    )
    print(
        json.dumps(
            {
                "ratio": round(ratio, 4),
                "ratio_q1": round(quartiles[0], 4),
                "ratio_q3": round(quartiles[2], 4),
                "ratio_cpu": round(ratio_cpu, 4),
                "ratio_fastest": round(ratio_fastest, 4),
                "ratio_null": round(ratio_null, 4),
                "hand_step_us": round(hand * 1e6, 1),
                "tracker_step_us": round(ours * 1e6, 1),
                "overhead_us_per_step": round((ours - hand) * 1e6, 1),
                "batch": args.batch,
                "hidden": args.hidden,
                "every": args.every,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
