"""Partial labels: every term reports what its value averages; optional terms may be absent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit as lk


def test_cross_entropy_counts_the_targets_that_are_not_ignored() -> None:
    logits = torch.randn(5, 3)
    label = torch.tensor([0, -100, 2, -100, 1])
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="x", target="y")})
    res = crit({"x": logits}, {"y": label})
    torch.testing.assert_close(res.counts["cls"], torch.tensor(3.0))
    torch.testing.assert_close(res["cls"], F.cross_entropy(logits, label))


def test_class_weights_count_as_the_mean_divides() -> None:
    # torch's weighted mean divides by the summed class weights of the non-ignored targets:
    # value * count is the weighted sum, so means over batches weighted by counts are exact.
    logits, label = torch.randn(4, 3), torch.tensor([2, 0, -100, 2])
    weight = torch.tensor([1.0, 2.0, 0.5])
    term = lk.Term(lk.losses.get("cross_entropy", weight=weight), input="x", target="y")
    value, count = term.measure("cls", {"x": logits}, {"y": label})
    assert callable(count)
    torch.testing.assert_close(count(), torch.tensor(0.5 + 1.0 + 0.5))
    summed = F.cross_entropy(logits, label, weight=weight, reduction="sum")
    torch.testing.assert_close(value * count(), summed)


def test_mask_and_sample_weight_count_their_sum() -> None:
    x, y = torch.randn(4), torch.randn(4)
    mask = torch.tensor([True, False, True, True])
    crit = lk.Criterion(
        {
            "m": lk.Term("mse", input="x", target="y", mask="m"),
            "w": lk.Term("l1", input="x", target="y", sample_weight="w"),
        }
    )
    w = torch.tensor([0.5, 1.0, 0.0, 2.0])
    res = crit({"x": x}, {"y": y, "m": mask, "w": w})
    torch.testing.assert_close(res.counts["m"], torch.tensor(3.0))
    torch.testing.assert_close(res.counts["w"], torch.tensor(3.5))
    torch.testing.assert_close(res["m"], ((x - y)[mask] ** 2).mean())
    torch.testing.assert_close(res["w"], ((x - y).abs() * w).sum() / 3.5)


def test_a_plain_term_reports_no_count() -> None:
    crit = lk.Criterion({"reg": lk.Term("mse", input="x", target="y")})
    assert crit({"x": torch.zeros(3)}, {"y": torch.ones(3)}).counts == {}


def test_an_optional_term_is_absent_from_a_batch_without_its_target() -> None:
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label", optional=True),
            "rec": lk.Term("mse", input="recon", target="image", optional=True, weight=0.5),
        }
    )
    logits = torch.randn(4, 3, requires_grad=True)
    recon = torch.randn(4, 2, requires_grad=True)
    outputs = {"logits": logits, "recon": recon}
    only_images = {"image": torch.zeros(4, 2)}
    res = crit(outputs, only_images)
    assert res.keys() == ("rec",)
    assert res.absent == ("cls",)
    assert sorted(res.log()) == ["loss", "loss/rec", "weight/rec"]
    torch.testing.assert_close(res.total, 0.5 * recon.detach().pow(2).mean())
    res.backward()
    assert logits.grad is None
    assert recon.grad is not None


def test_an_optional_term_with_every_target_ignored_counts_zero_and_stays_finite() -> None:
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label", optional=True),
            "rec": lk.Term("mse", input="recon", target="image"),
        }
    )
    logits = torch.randn(3, 4, requires_grad=True)
    batch = {"label": torch.full((3,), -100), "image": torch.ones(3)}
    res = crit({"logits": logits, "recon": torch.zeros(3)}, batch)
    torch.testing.assert_close(res["cls"], torch.tensor(0.0))
    torch.testing.assert_close(res.counts["cls"], torch.tensor(0.0))
    torch.testing.assert_close(res.total, torch.tensor(1.0))
    res.total.backward()
    torch.testing.assert_close(logits.grad, torch.zeros(3, 4))


def test_a_required_term_with_every_target_ignored_gives_zero_and_no_gradient() -> None:
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="x", target="y")})
    x = torch.randn(2, 3, requires_grad=True)
    res = crit({"x": x}, {"y": torch.full((2,), -100)})
    torch.testing.assert_close(res["cls"], torch.tensor(0.0))
    res.total.backward()
    torch.testing.assert_close(x.grad, torch.zeros(2, 3), rtol=0, atol=0)


def test_a_non_finite_term_in_a_routed_subset_is_named_with_its_own_value() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", input="p", target="ya"),
            "b": lk.Term("mse", input="p", target="yb", check="off"),  # the criterion sees it
        }
    )
    batch = {"ya": torch.zeros(2), "yb": torch.tensor([float("inf"), 0.0])}
    with pytest.raises(lk.NonFiniteLossError, match=r"'b' = inf"):
        crit({"p": torch.zeros(2)}, batch, keys=["b"])


def test_a_batch_with_no_trained_term_present_is_skipped_loudly() -> None:
    crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="x", target="y", optional=True)})
    with pytest.warns(lk.LossKitWarning, match="skipped"):
        res = crit({"x": torch.randn(2, 3)}, {})
    assert res.keys() == ()
    assert res.absent == ("cls",)
    res.backward()  # nothing to do
    assert crit.skipped_steps == 1


def test_optional_callable_selector_returning_none_means_absent() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term(
                "mse", input="x", target=lambda out, batch: batch.get("ya"), optional=True
            ),
            "b": lk.Term("mse", input="x", target="yb"),
        }
    )
    res = crit({"x": torch.zeros(2)}, {"yb": torch.ones(2)})
    assert res.absent == ("a",)
    torch.testing.assert_close(res.total, torch.tensor(1.0))


def test_the_tracker_logs_the_mean_over_labelled_samples_only() -> None:
    # The case end to end: a batch of 4 labelled samples with error 1, then a batch in
    # which no sample carries the label. Weighted by batch size the log read 0.5.
    crit = lk.Criterion({"a": lk.Term("l1", input="p", target="y", mask="has_y")})
    tracker = lk.tracking.Tracker(every=None, criterion=crit)
    labelled = {"y": torch.ones(4), "has_y": torch.ones(4, dtype=torch.bool)}
    unlabelled = {"y": torch.zeros(4), "has_y": torch.zeros(4, dtype=torch.bool)}
    for batch in (labelled, unlabelled):
        tracker.update(crit({"p": torch.zeros(4)}, batch), batch_size=4)
    (record,) = tracker.flush()
    assert record.values["loss/a"] == pytest.approx(1.0)


def test_an_interval_without_the_optional_key_does_not_log_it() -> None:
    crit = lk.Criterion(
        {
            "a": lk.Term("l1", input="p", target="ya", optional=True),
            "b": lk.Term("l1", input="p", target="yb"),
        }
    )
    tracker = lk.tracking.Tracker(every=None, criterion=crit)
    tracker.update(crit({"p": torch.zeros(2)}, {"yb": torch.ones(2)}), batch_size=2)
    (record,) = tracker.flush()
    assert record.values.get("loss/a") is None
    assert record.values["loss/b"] == pytest.approx(1.0)


def test_evaluate_averages_each_key_over_its_labelled_samples() -> None:
    model = torch.nn.Identity()
    crit = lk.Criterion(
        {
            "cls": lk.Term("cross_entropy", input="logits", target="label", optional=True),
            "reg": lk.Term("l1", input="value", target="y"),
        }
    )
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0], [0.0, 3.0]])
    label = torch.tensor([0, -100, 1, 1, -100])
    value, y = torch.zeros(5), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    data = [
        {"logits": logits[:2], "label": label[:2], "value": value[:2], "y": y[:2]},
        {"logits": logits[2:4], "value": value[2:4], "y": y[2:4]},  # dataset without labels
        {"logits": logits[4:], "label": label[4:], "value": value[4:], "y": y[4:]},  # ignored
    ]
    # batch 1 has one labelled sample, batch 2 no label key, batch 3 only ignore_index
    means = lk.evaluation.evaluate(model, crit, data, forward=lambda m, b: b)
    expected = F.cross_entropy(logits[:1], label[:1])
    assert means["loss/cls"] == pytest.approx(float(expected), rel=1e-6)
    assert means["loss/reg"] == pytest.approx(float(y.mean()), rel=1e-6)


def test_a_skipped_rank_with_a_gradient_balancer_is_refused_not_left_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under several processes (faked here: the reduction is never reached) a rank whose batch
    # holds no trained term cannot join a gradient balancer's per-step reduction of per-key
    # gradients: it says so instead of leaving the other ranks waiting.
    trunk = torch.nn.Linear(2, 2)
    crit = lk.Criterion(
        {
            "a": lk.Term("mse", input="a", target="ya", optional=True),
            "b": lk.Term("mse", input="b", target="yb", optional=True),
        },
        balancer=lk.balancers.Gradient("mgda", shared=trunk),
    )
    monkeypatch.setattr("losskit._shares.RankShares.active", staticmethod(lambda: True))
    h = trunk(torch.ones(3, 2))
    with (
        pytest.warns(lk.LossKitWarning, match="skipped"),
        pytest.raises(lk.ConfigError, match=r"at least one\s+required"),
    ):
        crit({"a": h[:, 0], "b": h[:, 1]}, {})
