"""Every recipe in examples/ runs at tiny size and learns something real."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def _load(name: str) -> ModuleType:
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return _load


def test_every_example_has_a_test() -> None:
    tested = {
        "multitask",
        "vae",
        "gan",
        "segmentation",
        "distillation",
        "toy_pareto",
        "compare_regression_losses",
        "partial_labels",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_multitask_hand_written_loop(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    values = load("multitask").main(steps=150, out=tmp_path)
    assert values["loss/cls"] < 0.8  # chance level is log(4) = 1.39
    assert (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "report.html").exists()


def test_vae_with_cyclical_kl_warmup(load) -> None:  # type: ignore[no-untyped-def]
    summary = load("vae").main(epochs=3, limit=256)
    weights = [row["train"]["weight/kl"] for row in summary.history]
    assert weights[0] < 1.0  # the KL term is still warming up in the first epoch
    assert torch.isfinite(torch.tensor(summary.val["loss"]))
    first, last = summary.history[0]["val"]["loss/recon"], summary.val["loss/recon"]
    assert last < first


def test_gan_with_two_routed_optimizers(load) -> None:  # type: ignore[no-untyped-def]
    summary, quality = load("gan").main(epochs=10, batches=40)
    assert set(summary.train) >= {"loss/adv_d", "loss/adv_g"}
    # Generated points start near the origin, 2 away from the ring; training pulls them onto it.
    assert quality["distance_before"] > 1.0
    assert quality["distance_after"] < 0.5 * quality["distance_before"]


def test_segmentation_dice_plus_cross_entropy(load) -> None:  # type: ignore[no-untyped-def]
    summary = load("segmentation").main(epochs=5, n=96)
    ious = [row["val"]["metric/iou"] for row in summary.history]
    dice = [row["val"]["loss/dice"] for row in summary.history]
    assert ious[-1] > ious[0] + 0.1
    assert dice[-1] < dice[0]
    assert summary.best_value == max(ious)  # monitored with mode="max"


def test_distillation_student_learns_from_the_teacher(load) -> None:  # type: ignore[no-untyped-def]
    teacher, student = load("distillation").main(epochs=4)
    assert teacher.val["metric/accuracy"] > 0.9
    kd = [row["train"]["loss/kd"] for row in student.history]
    assert kd[-1] < 0.6 * kd[0]
    assert student.val["metric/accuracy"] > 0.6  # chance is 0.1
    assert student.val["weight/kd"] == pytest.approx(0.7)


def test_compare_regression_losses_robust_loss_beats_mse(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = load("compare_regression_losses").main(out=tmp_path, seeds=3, epochs=8, n_train=128)
    c = result.comparison
    assert c.rank_by == "val/loss/mse"  # the clean validation MSE, a monitor-only term
    tiers = {c.labels[r.variant].split("=")[1]: r for r in c.ranking}
    assert c.ranking[0].variant != "terms.fit.loss=mse"
    best = c.ranking[0].value
    mse = tiers["mse"].value
    assert mse.n == best.n == 3
    # not only a better mean: MSE's whole range over the seeds lies above the best's range
    assert mse.low > best.high
    assert tiers["mse"].tier > max(tiers["l1"].tier, tiers["huber"].tier)
    assert "terms.fit.loss=mse" not in c.ranking[0].ties
    for variant in c.variants:  # every variant reports the monitored clean errors
        assert c.row(variant, "val/loss/mae").final.n == 3


def test_partial_labels_key_means_count_only_the_labelled_samples(load) -> None:  # type: ignore[no-untyped-def]
    # Accumulated over a round-robin of batches from A (class only), B (image and ink only)
    # and C (both), each key's mean must be the one of a single batch of all the samples that
    # carry its label: an absent key averaged in as 0 would pull it down.
    from losskit.data import partially_labelled_digits
    from losskit.demo import DigitsNet

    example = load("partial_labels")
    parts = partially_labelled_digits(seed=0, both_fraction=0.2)
    torch.manual_seed(0)
    model, crit = DigitsNet().eval(), example.make_criterion()
    means = example.key_means(model, crit, example.round_robin(parts, batch_size=50, seed=0))
    assert sorted(means) == ["loss/cls", "loss/ink", "loss/recon"]
    labelled = {"cls": (parts.classes, parts.both), "recon": (parts.images, parts.both)}
    labelled["ink"] = labelled["recon"]
    for key, sets in labelled.items():
        batch = {k: torch.cat([ds.tensors[k] for ds in sets]) for k in sets[0].keys}
        with torch.no_grad():
            res = crit(model(batch["pixels"]), batch)
        assert res.keys() == ((key,) if key == "cls" else ("recon", "ink"))
        assert means[f"loss/{key}"] == pytest.approx(float(res[key]), rel=1e-5)


def test_partial_labels_trains_every_head_on_its_labels(load) -> None:  # type: ignore[no-untyped-def]
    summary, hand = load("partial_labels").main(tiny=True)
    keys = ("loss/cls", "loss/recon", "loss/ink")
    assert hand.skipped_steps == 0
    for epoch in hand.train:  # every key is trained (and logged) every epoch, never as 0
        assert all(epoch[k] > 0 for k in keys)
    for key in keys:
        assert hand.after[key] < 0.9 * hand.before[key], key
        assert summary.val[key] < summary.history[0]["val"][key], key
        assert summary.train[key] > 0
    assert hand.after["loss/cls"] < 0.2 * hand.before["loss/cls"]  # 2.3 at chance
    assert summary.val["metric/accuracy"] > 0.8  # chance is 0.1
