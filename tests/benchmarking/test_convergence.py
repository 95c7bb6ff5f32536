"""Convergence in ``bench``: deterministic per seed, steps to target read off the curves, losses
of other families or contracts reported as not applicable, the adapters and metrics against
hand-computed values, and the CLI's JSON fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import losskit as lk
from losskit.benchmarking import TASKS, ConvergenceSettings, Spread
from losskit.benchmarking._cases import Case
from losskit.benchmarking._convergence import task_runs
from losskit.benchmarking._tasks import adapter
from losskit.cli import app
from losskit.errors import ConfigError

CPU = torch.device("cpu")
TINY = ConvergenceSettings(seeds=3, steps=20, tasks=["digits"])


def _runs(name: str, settings: ConvergenceSettings = TINY) -> list[lk.benchmarking.TaskRun]:
    return task_runs(Case.parse(name), settings, CPU, {})


def test_the_same_seeds_give_the_same_steps_metrics_and_curves() -> None:
    (first,), (second,) = _runs("cross_entropy"), _runs("cross_entropy")
    assert first.applicable
    assert first.curves == second.curves
    assert first.steps_to_target == second.steps_to_target
    assert first.best_metric == second.best_metric
    # ... and the seeds differ from each other, so the equality above is not trivial.
    assert first.curves[0] != first.curves[1]
    assert torch.are_deterministic_algorithms_enabled() is False  # restored
    assert torch.get_num_threads() == 1  # restored (the test session runs one thread)


def test_steps_to_target_is_the_first_evaluation_at_the_target() -> None:
    settings = ConvergenceSettings(seeds=3, steps=120, tasks=["digits"])
    (run,) = _runs("cross_entropy", settings)
    assert run.eval_steps == list(range(10, 121, 10))
    target = TASKS["digits"].target
    assert run.steps_to_target is not None
    assert run.best_metric is not None
    for seed, curve in enumerate(run.curves):
        hits = [
            step for step, metric in zip(run.eval_steps, curve, strict=True) if metric >= target
        ]
        assert run.steps_to_target.per_seed[seed] == (hits[0] if hits else None)
        assert run.best_metric.per_seed[seed] == max(curve)
    assert run.reached >= 1  # cross-entropy reaches 90% digit accuracy within 120 steps
    assert run.seconds_to_target is not None
    assert all(s > 0 for s in run.seconds_to_target.values)


def test_losses_that_cannot_train_on_a_task_are_reported_not_applicable() -> None:
    settings = ConvergenceSettings(seeds=1, steps=2)
    (kl,) = _runs("kl_div", settings)
    assert (kl.applicable, kl.task) == (False, "-")
    assert kl.reason == (
        "a distribution loss; convergence tasks train classification, regression, "
        "segmentation losses"
    )
    z = _runs("z_loss", settings)
    assert [(r.task, r.applicable) for r in z] == [
        ("digits", False),
        ("digits_attributes", False),
    ]
    assert z[0].reason.startswith("its target is any; digits has classes labels, which convert to")
    ce = _runs("cross_entropy", settings)
    assert [(r.task, r.applicable) for r in ce] == [("digits", True), ("digits_attributes", False)]
    # A loss that needs a second input is refused on the probe, with the error.
    nll = _runs("gaussian_nll", settings)
    assert not nll[0].applicable
    assert "missing 1 required positional argument: 'var'" in nll[0].reason


def test_binary_target_losses_train_one_vs_rest_and_on_the_attributes() -> None:
    runs = _runs("focal", ConvergenceSettings(seeds=1, steps=2))
    assert [(r.task, r.applicable) for r in runs] == [
        ("digits", True),
        ("digits_attributes", True),
    ]


def test_adapters_feed_each_contract_what_it_expects() -> None:
    z = torch.randn(5, 10)
    y = torch.tensor([0, 3, 9, 3, 1])
    digits = TASKS["digits"]

    def contract(name: str) -> lk.losses.Contract:
        case = Case.parse(name)
        return case.contract(case.build())

    nll = adapter(digits, contract("nll"), None)
    bce = adapter(digits, contract("bce"), None)
    hinge = adapter(TASKS["digits_attributes"], contract("soft_margin"), None)
    assert not isinstance(nll, str)
    assert not isinstance(bce, str)
    assert not isinstance(hinge, str)
    torch.testing.assert_close(nll.output(z), torch.log_softmax(z, 1))
    assert torch.equal(nll.target(y), y)
    torch.testing.assert_close(bce.output(z), torch.sigmoid(z))
    torch.testing.assert_close(bce.target(y), F.one_hot(y, 10).float())
    torch.testing.assert_close(
        hinge.target(torch.tensor([[1.0, 0.0]])), torch.tensor([[1.0, -1.0]])
    )
    sigmoid_bce = adapter(digits, contract("bce"), torch.sigmoid)
    assert not isinstance(sigmoid_bce, str)
    assert sigmoid_bce.output is torch.sigmoid


def test_metrics_match_hand_computed_values() -> None:
    raw = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 0.0]])
    assert TASKS["digits"].score(raw, torch.tensor([0, 1, 1, 1])) == 0.5
    attributes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    # raw - 1.5 > 0 predicts [[1, 0], [0, 1], [1, 0], [0, 0]]: 4 of the 8 labels right.
    assert TASKS["digits_attributes"].score(raw - 1.5, attributes) == 4 / 8
    pred, y = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [2.0], [4.0]])
    # R² = 1 - 1 / sum((y - 7/3)^2) = 1 - 1 / (14/3)
    assert TASKS["regression"].score(pred, y) == pytest.approx(1 - 3 / 14)
    # A 1x4 segmentation: predicted [0, 1, 1, 2], true [0, 1, 2, 2]: IoU 1, 1/2, 1/2.
    logits = F.one_hot(torch.tensor([[[0, 1, 1, 2]]]), 3).movedim(-1, 1).float()
    score = TASKS["segmentation"].score(logits, torch.tensor([[[0, 1, 2, 2]]]))
    assert score == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_regression_outliers_hit_a_tenth_of_the_training_targets_only() -> None:
    clean, noisy = TASKS["regression"].data(), TASKS["regression_outliers"].data()
    moved = (clean.y_train - noisy.y_train).abs()
    assert 0.07 < float((moved > 0).double().mean()) < 0.13
    torch.testing.assert_close(moved[moved > 0], torch.full_like(moved[moved > 0], 10.0))
    assert torch.equal(clean.y_val, noisy.y_val)


def test_spread_over_seeds_that_reached() -> None:
    spread = Spread([100.0, None, 140.0])
    assert (spread.mean, spread.std, spread.min, spread.max) == (120.0, 20.0, 100.0, 140.0)
    assert spread.to_dict()["reached"] == 2
    assert Spread([None]).mean is None


def test_settings_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['digit'\]; the tasks are"):
        ConvergenceSettings(tasks=["digit"])
    with pytest.raises(ConfigError, match="seeds must be >= 1, got 0"):
        ConvergenceSettings(seeds=0)


def test_cli_json_holds_steps_and_seconds_to_target_with_their_spread(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            *("bench", "huber", "hinge_embedding", "--shape", "16,4", "--no-memory"),
            *("--threads", "1", "--convergence", "--quick", "--seeds", "3"),
            *("--json", "--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((out / "bench.json").read_text())
    tasks = {t["name"]: t for t in data["settings"]["convergence"]["tasks"]}
    assert tasks["regression"]["steps"] == TASKS["regression"].quick_steps
    huber, metric = data["cases"]
    runs = {r["task"]: r for r in huber["convergence"]}
    assert set(runs) == {"regression", "regression_outliers"}
    for run in runs.values():
        for figure in ("steps_to_target", "seconds_to_target", "best_metric"):
            assert set(run[figure]) == {"mean", "std", "min", "max", "reached", "per_seed"}
            assert len(run[figure]["per_seed"]) == 3
    assert metric["convergence"][0]["applicable"] is False
    ratings = {r["name"]: r for r in data["ratings"]}
    assert set(ratings["huber"]["convergence_speed"]) == {"regression", "regression_outliers"}
    assert ratings["hinge_embedding"]["convergence_speed"] == {}
    assert (out / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segmentation_losses_train_on_the_segmentation_task() -> None:
    settings = ConvergenceSettings(seeds=1, steps=10, tasks=["segmentation"])
    multilabel = Case.parse("lovasz_hinge", {"mode": "multilabel"})  # one-hot binary targets
    for case in (Case.parse("dice"), multilabel):
        (run,) = task_runs(case, settings, CPU, {})
        assert (run.task, run.applicable) == ("segmentation", True), run.reason
        assert run.best_metric is not None
        assert 0 < run.best_metric.per_seed[0] <= 1  # type: ignore[operator]
    # In its default binary mode the loss wants one channel: the probe says so.
    (binary,) = _runs("lovasz_hinge", settings)
    assert not binary.applicable
    assert "mode='binary' expects one logit channel" in binary.reason
    data = TASKS["segmentation"].data()
    assert tuple(data.x_train.shape) == (256, 1, 16, 16)
    assert set(data.y_train.unique().tolist()) == {0, 1, 2}
