"""lk.evaluation.evaluate: dataset means equal the one-batch computation for chunk sizes that do
and do not divide N and for uneven batches; no_grad and eval mode; one read from the device;
errors."""

from __future__ import annotations

import importlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor

import losskit as lk
from losskit.errors import ConfigError, LossInputError

N = 23


def _setup() -> tuple[torch.nn.Module, lk.Criterion, dict[str, Tensor]]:
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 4))
    crit = lk.Criterion(
        {
            "ce": lk.Term("cross_entropy", input="logits", target="label"),
            "reg": lk.Term("huber", input="value", target="y", weight=0.3),
        }
    )
    data = {
        "x": torch.randn(N, 5, generator=g),
        "label": torch.randint(0, 4, (N,), generator=g),
        "y": torch.randn(N, generator=g),
    }
    return model, crit, data


def _forward(model: Any, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    z = model(batch["x"])
    return {"logits": z, "value": z[:, 0]}


def _batches(data: dict[str, Tensor], sizes: list[int]) -> list[dict[str, Tensor]]:
    out, start = [], 0
    for size in sizes:
        out.append({k: v[start : start + size] for k, v in data.items()})
        start += size
    return out


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 7, 23, 100])
@pytest.mark.parametrize("sizes", [[N], [10, 10, 3], [1, 22]])
def test_equals_the_one_batch_computation(chunk_size: int | None, sizes: list[int]) -> None:
    model, crit, data = _setup()
    model.eval()
    with torch.no_grad():
        full = {k: v.item() for k, v in crit(_forward(model, data), data).log().items()}
    model.train()
    means = lk.evaluation.evaluate(
        model, crit, _batches(data, sizes), chunk_size=chunk_size, forward=_forward
    )
    assert sorted(means) == sorted(full)
    assert sorted(full) == ["loss", "loss/ce", "loss/reg", "weight/ce", "weight/reg"]
    torch.testing.assert_close(means, full, rtol=1e-6, atol=1e-6)
    assert model.training  # restored


def test_unweighted_mean_of_batches_would_differ() -> None:
    # The case the sample weighting exists for: a short last batch.
    model, crit, data = _setup()
    batches = _batches(data, [20, 3])
    means = lk.evaluation.evaluate(model, crit, batches, forward=_forward)
    model.eval()
    with torch.no_grad():
        naive = sum(crit(_forward(model, b), b)["ce"].item() for b in batches) / 2
        full = crit(_forward(model, data), data)["ce"].item()
    assert means["loss/ce"] == pytest.approx(full, rel=1e-6)
    assert abs(naive - full) > 1e-3


def test_no_grad_eval_mode_and_one_read_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _, data = _setup()
    seen: list[tuple[bool, bool]] = []
    reads = {"item": 0, "tolist": 0}

    def criterion(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        seen.append((torch.is_grad_enabled(), model.training))
        return {"loss": outputs["value"].square().mean(), "count": outputs["value"].new_ones(())}

    for name in reads:
        original = getattr(Tensor, name)

        def counted(self: Tensor, *a: Any, _name: str = name, _f: Any = original) -> Any:
            reads[_name] += 1
            return _f(self, *a)

        monkeypatch.setattr(Tensor, name, counted)
    means = lk.evaluation.evaluate(
        model, criterion, _batches(data, [10, 13]), chunk_size=4, forward=_forward
    )
    monkeypatch.undo()
    assert seen == [(False, False)] * 7  # 3 + 4 chunks
    assert reads == {"item": 0, "tolist": 1}
    assert means["count"] == 1.0


def test_tuple_batches_and_default_forward() -> None:
    x, y = torch.randn(9, 3), torch.randint(0, 3, (9,))
    crit = lk.Criterion({"ce": lk.Term("cross_entropy", target=1)})
    means = lk.evaluation.evaluate(
        torch.nn.Identity(), crit, [(x[:5], y[:5]), (x[5:], y[5:])], chunk_size=2
    )
    expected = torch.nn.functional.cross_entropy(x, y).item()
    assert means["loss/ce"] == pytest.approx(expected, rel=1e-6)


def labelled_l1(outputs: Tensor, batch: tuple[Tensor, Tensor]) -> lk.LossResult:
    """A stand-in criterion over partial labels (NaN: no label): "a" is the L1 error over the
    labelled samples with their count, "b" the mean output (no count), "c" a head whose label
    no sample carries (count 0)."""
    y = batch[1]
    labelled = ~torch.isnan(y)
    count = labelled.sum().to(outputs.dtype)
    a = (outputs - y).abs()[labelled].sum() / count.clamp(min=1)  # 0 without labels
    b = outputs.mean()
    return lk.LossResult(
        a + b,
        ("a", "b", "c"),
        (a, b, torch.zeros(())),
        torch.ones(3),
        counts=(count, None, torch.zeros(())),
    )


NAN = float("nan")
PARTIAL = [  # labelled errors 1, 0 | none | 2, 0, 3: six over five labelled samples
    (torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, NAN, 3.0, NAN])),
    (torch.tensor([1.0, 1.0, 1.0]), torch.full((3,), NAN)),
    (torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0]), torch.tensor([0.0, NAN, NAN, 2.0, 5.0])),
]


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 3])
def test_a_counted_key_is_the_mean_over_its_labelled_samples(chunk_size: int | None) -> None:
    means = lk.evaluation.evaluate(torch.nn.Identity(), labelled_l1, PARTIAL, chunk_size)
    assert means["loss/a"] == pytest.approx((1 + 0 + 2 + 0 + 3) / 5)  # sample-weighted: 0.86
    assert means["loss/b"] == pytest.approx((10 + 3 + 10) / 12)  # no count: by samples
    assert "loss/c" not in means  # counted 0 times over the whole data
    assert means["weight/c"] == 1.0
    if chunk_size is None:  # the total keeps the sample weighting of each batch's value
        assert means["loss"] == pytest.approx((3.0 * 4 + 1.0 * 3 + (5 / 3 + 2) * 5) / 12)


def test_a_counted_key_left_out_of_some_results() -> None:
    def optional(outputs: Tensor, batch: tuple[Tensor, Tensor]) -> lk.LossResult:
        res = labelled_l1(outputs, batch)
        if not res.counts["a"]:  # an optional term: absent where no sample is labelled
            b = res["b"]
            return lk.LossResult(b, ("b",), (b,), torch.ones(1), counts=(None,), absent=("a",))
        return res

    means = lk.evaluation.evaluate(torch.nn.Identity(), optional, PARTIAL)
    assert means["loss/a"] == pytest.approx(6 / 5)
    assert means["loss/b"] == pytest.approx(23 / 12)


def test_a_value_counted_zero_times_adds_nothing_even_when_not_finite() -> None:
    def empty_mean(outputs: Tensor, batch: tuple[Tensor, Tensor]) -> lk.LossResult:
        labelled = ~torch.isnan(batch[1])
        a = (outputs - batch[1])[labelled].abs().mean()  # NaN without labels
        return lk.LossResult(
            torch.zeros(()), ("a",), (a,), torch.ones(1), counts=(labelled.sum().float(),)
        )

    means = lk.evaluation.evaluate(torch.nn.Identity(), empty_mean, PARTIAL)
    assert means["loss/a"] == pytest.approx(6 / 5)


def test_errors() -> None:
    model, crit, data = _setup()
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer"):
        lk.evaluation.evaluate(model, crit, [data], chunk_size=0, forward=_forward)
    with pytest.raises(ConfigError, match="pass forward="):
        lk.evaluation.evaluate(model, crit, [data])
    with pytest.raises(LossInputError, match="expected a scalar"):
        lk.evaluation.evaluate(model, lambda o, b: {"v": o["value"]}, [data], forward=_forward)
    with pytest.raises(LossInputError, match="no tensor with a sample dim"):
        lk.evaluation.evaluate(model, crit, [{"x": 1}], forward=_forward)
    assert lk.evaluation.evaluate(model, crit, [], forward=_forward) == {}


def test_every_rank_gets_the_mean_over_all_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # spawned children import the worker
    worker = importlib.import_module("evaluation_ddp_worker")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mp.spawn(worker.worker, args=(str(tmp_path), port), nprocs=worker.WORLD, join=True)
    out = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in range(worker.WORLD)]
    x, y = worker.data()
    full = torch.nn.functional.cross_entropy(x, y).item()
    rank0 = torch.nn.functional.cross_entropy(x[:7], y[:7]).item()
    for r, result in enumerate(out):
        assert "error" not in result, f"rank {r} failed:\n{result['error']}"
        assert result["means"]["loss/ce"] == pytest.approx(full, rel=1e-6)
        assert result["counted"]["loss/a"] == pytest.approx(worker.COUNTED_MEAN)
        assert "loss/c" not in result["counted"]
        assert "only0" in result["mismatch"]
        assert "only1" in result["mismatch"]
    assert out[0]["local"]["loss/ce"] == pytest.approx(rank0, rel=1e-6)
