"""Large-vocabulary cross-entropy: losskit's ``linear_cross_entropy`` against the logits path.

Cases, on hidden states ``h`` (N, H), a projection ``W`` (V, H) and class indices ``y`` (N,),
float32 on the CPU, one forward and one backward into fresh gradients of ``h`` and ``W``
(dropped after each step):

- ``plain``: ``F.cross_entropy(h @ W.T, y)``, which holds the (N, V) logits and their gradient;
- ``loop``: the common hand-written loop over chunks of 1024 rows, each chunk's logits,
  ``F.cross_entropy(..., reduction="sum") / N`` and ``backward()`` before the next chunk
  (gradients accumulate in ``h.grad`` and ``W.grad``);
- ``losskit``: a :class:`losskit.Criterion` with
  ``lk.Term("linear_cross_entropy", input=("hidden", "weight"), target="labels")``, which runs
  torch's chunked ``F.linear_cross_entropy`` and ``res.backward()``.

Peak memory: each case runs in its own spawned child process (``losskit.benchmarking._memory``):
one warm-up step, then the kernel's peak-RSS mark is reset and one step runs; the peak resident
size minus the resident size just before the step (inputs and everything else held) is reported.
Time: in this process, one warm-up step per case, then rounds that run every case once in turn
(so that load on the shared machine falls on the cases of a round alike). The ratios are the
median over rounds of each round's ratio to ``plain`` (as in ``benchmarks/criterion_overhead.py``);
the times shown are each case's minimum over rounds (the least disturbed run), for wall-clock
time and for this process's CPU time.

    python benchmarks/linear_ce.py [--quick]

Full size: N=8192, H=1024, V=32768 (plain needs about 3 GiB); ``--quick``: N=2048. The last
line printed is a JSON object with ``peak_mem_ratio`` and ``time_ratio`` (losskit over plain),
the same for the loop, and every measurement. Targets (issue 10): peak memory ratio at most
0.12, time ratio at most 1.05.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import losskit as lk
from losskit.benchmarking._memory import peak_rss_delta

CASES = ("plain", "loop", "losskit")
LOOP_ROWS = 1024


def setup(case: str, n: int, h: int, v: int) -> Callable[[], None]:
    """Inputs for ``case`` (not measured) and its forward+backward step (measured)."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).requires_grad_(True)
    weight = (torch.randn(v, h, generator=g) / h**0.5).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=g)

    def fresh() -> None:
        # After the step: a gradient held from the previous step would count as memory "before"
        # it and hide the step's own gradients from the peak.
        hidden.grad = None
        weight.grad = None

    if case == "plain":

        def step() -> None:
            F.cross_entropy(hidden @ weight.T, labels).backward()
            fresh()

    elif case == "loop":

        def step() -> None:
            for start in range(0, n, LOOP_ROWS):
                rows = slice(start, start + LOOP_ROWS)
                logits = hidden[rows] @ weight.T
                (F.cross_entropy(logits, labels[rows], reduction="sum") / n).backward()
            fresh()

    else:
        crit = lk.Criterion(
            {"lm": lk.Term("linear_cross_entropy", input=("hidden", "weight"), target="labels")}
        )
        outputs, batch = {"hidden": hidden, "weight": weight}, {"labels": labels}

        def step() -> None:
            crit(outputs, batch).backward()
            fresh()

    return step


def _median_ratio(case: list[float], plain: list[float]) -> float:
    return statistics.median(c / p for c, p in zip(case, plain, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=2048 (under a minute)")
    parser.add_argument("--rounds", type=int, default=None, help="default 4, 3 at full size")
    args = parser.parse_args()
    n, h, v = (2048 if args.quick else 8192), 1024, 32768
    rounds = args.rounds or (4 if args.quick else 3)
    threads = torch.get_num_threads()
    print(f"N={n} H={h} V={v} float32, cpu, {threads} threads, torch {torch.__version__}")

    memory = {case: peak_rss_delta(setup, case, n, h, v).peak_mib for case in CASES}

    steps = {case: setup(case, n, h, v) for case in CASES}
    for step in steps.values():
        step()  # warm-up (and the contract's first-call checks)
    times: dict[str, list[float]] = {case: [] for case in CASES}
    cpu: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(rounds):
        for case, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            times[case].append(time.perf_counter() - start)
            cpu[case].append(time.process_time() - start_cpu)
    best = {case: min(t) for case, t in times.items()}
    best_cpu = {case: min(t) for case, t in cpu.items()}
    ratio = {case: _median_ratio(times[case], times["plain"]) for case in CASES}
    cpu_ratio = {case: _median_ratio(cpu[case], cpu["plain"]) for case in CASES}
    del steps

    print(
        f"{'case':<8} {'peak MiB':>9} {'x plain':>8} {'time s':>8} {'x plain':>8} "
        f"{'cpu s':>8} {'x plain':>8}"
    )
    for case in CASES:
        print(
            f"{case:<8} {memory[case]:>9.0f} {memory[case] / memory['plain']:>8.3f} "
            f"{best[case]:>8.3f} {ratio[case]:>8.3f} "
            f"{best_cpu[case]:>8.3f} {cpu_ratio[case]:>8.3f}"
        )
    figures = {
        "n": n,
        "hidden": h,
        "vocab": v,
        "threads": torch.get_num_threads(),
        "peak_mem_ratio": memory["losskit"] / memory["plain"],
        "time_ratio": ratio["losskit"],
        "cpu_time_ratio": cpu_ratio["losskit"],
        "loop_peak_mem_ratio": memory["loop"] / memory["plain"],
        "loop_time_ratio": ratio["loop"],
        "peak_mib": memory,
        "time_s": best,
        "cpu_s": best_cpu,
        "time_s_all": times,
        "cpu_s_all": cpu,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
