"""examples/toy_pareto.py at small size: every method runs, and the plain sum stalls as documented.

The full run (100,000 Adam steps per start, results in docs/balancing.md) takes tens of minutes;
here each method takes a few hundred steps, and the sum's stall, which sets in within the first
few thousand steps, is checked on its own.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytest.importorskip("qpsolvers")
pytest.importorskip("cvxpy")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("toy_pareto", None)
    return importlib.import_module("toy_pareto")


def test_every_method_runs_from_every_start_and_plots(toy: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "toy.png"
    runs = toy.main(steps=200, out=out, verbose=False)
    assert [(r.method, r.start) for r in runs] == [
        (m, s) for m in ("sum", "mgda", "pcgrad", "cagrad", "upgrad") for s in toy.STARTS
    ]
    for r in runs:
        assert torch.isfinite(r.path).all()
        assert r.path[0].tolist() == list(r.start)
        # Every method improves the average objective from every start.
        f0, f1 = (toy.objectives(p) for p in (r.path[0], r.path[-1]))
        assert (f1["f1"] + f1["f2"]) < (f0["f1"] + f0["f2"])
    assert out.stat().st_size > 10_000


def test_the_sum_stalls_in_the_valleys_above_the_pareto_set(toy: ModuleType) -> None:
    """From the upper starts Adam on the sum runs into a valley at |x1| ~ 5 and stays there:
    in the full run it ends at (-5.06, 2.18) and (5.04, 2.29), about 10.5 from the Pareto set."""
    for start, side in (((-8.5, 7.5), -1), ((9.0, 9.0), 1)):
        r = toy.run("sum", start, steps=4000)
        x1, x2 = r.end
        assert 4.5 < side * x1 < 5.5
        assert 2.0 < x2 < 4.0
        assert toy.distance_to_pareto_set(r.end) > 10.0
        assert r.recent < 0.25  # the last 1000 steps moved it by less than a quarter unit
        assert r.verdict == "stalled"


def test_verdicts() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        toy = importlib.import_module("toy_pareto")
    finally:
        sys.path.remove(str(EXAMPLES))
    # The Pareto set: the two gradients point in opposite directions (or one vanishes).
    assert toy.pareto_gap((0.0, toy.PARETO_X2)) < 1e-4
    assert toy.pareto_gap((-6.584, -8.426)) < 1e-4  # a point PCGrad ends at, off the drawn line
    assert toy.verdict((0.0, toy.PARETO_X2), recent=0.0) == "pareto set"
    assert toy.verdict((-7.0, toy.PARETO_X2), recent=1.0) == "pareto edge"
    assert toy.verdict((0.0, -7.0), recent=1.0) == "moving"
    assert toy.verdict((-5.0, 2.0), recent=0.1) == "stalled"
    assert toy.distance_to_pareto_set((9.0, toy.PARETO_X2)) == pytest.approx(2.0)
