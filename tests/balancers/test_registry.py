"""Balancers by name, in Python and in config files; their state in state_dict."""

from __future__ import annotations

import pytest
import torch

import losskit as lk
from losskit.config import load_config
from losskit.run import build

from .conftest import Net, make_batch, terms

LOSS_LEVEL = {
    "sum": "sum",
    "mean": "mean",
    "magnitude": "magnitude",
    "uncertainty": "uncertainty",
    "imtl_l": "imtl_l",
    "geometric_mean": "geometric_mean",
    "random": "random",
    "stch": {"name": "stch", "mu": 0.5, "preference": {"k0": 0.5, "k1": 0.3, "k2": 0.2}},
    "dwa": {"name": "dwa", "every": 2},
    "famo": {"name": "famo", "min_losses": {"k2": -1.0}},
}


def test_every_documented_method_is_registered() -> None:
    names = set(lk.balancers.available())
    assert set(LOSS_LEVEL) | {"gradnorm"} <= names
    gradient = {"upgrad", "mgda", "pcgrad", "cagrad", "imtl_g", "aligned_mtl", "nash_mtl"}
    assert gradient <= set(lk.balancers.BALANCERS.available("gradient"))
    assert all(lk.balancers.available().values())  # every name has a description
    assert isinstance(lk.balancers.create("uw"), lk.balancers.Uncertainty)  # an alias


def test_gradient_methods_are_ordinary_entries() -> None:
    for entry in lk.balancers.BALANCERS.entries("gradient"):
        assert isinstance(entry.factory, lk.balancers.GradientMethod)
        assert entry.factory.name == entry.name
    with pytest.raises(lk.ConfigError, match="unknown gradient balancer 'magnitude'"):
        lk.balancers.Gradient("magnitude", shared=torch.nn.Linear(2, 2))


def test_an_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(lk.ConfigError, match=r"did you mean 'magnitude'\?"):
        lk.Criterion(terms(), balancer="magnitud")
    with pytest.raises(KeyError, match="unknown balancer 'magnitud'"):
        lk.balancers.create("magnitud")


def test_bad_options_say_which() -> None:
    with pytest.raises(lk.ConfigError, match="'magnitude': unknown argument 'bta'; did you mean"):
        lk.Criterion(terms(), balancer={"name": "magnitude", "bta": 0.9})


def test_a_balancer_belongs_to_one_criterion() -> None:
    balancer = lk.balancers.Magnitude()
    lk.Criterion(terms(), balancer=balancer)
    with pytest.raises(lk.ConfigError, match="already bound"):
        lk.Criterion({"other": lk.Term("mse")}, balancer=balancer)


def test_a_user_balancer_plugs_in_like_the_built_ins() -> None:
    class Max(lk.balancers.BalancerBase):
        """Train on the largest term only."""

        def combine(self, losses, weights, keys):  # type: ignore[no-untyped-def]
            chosen = torch.nn.functional.one_hot(losses.argmax(), len(keys)).to(losses.dtype)
            return torch.dot(losses, chosen * weights), chosen * weights

    crit = lk.Criterion({"a": lk.Term("mse"), "b": lk.Term("l1")}, balancer=Max())
    res = crit(torch.zeros(2), torch.full((2,), 3.0))
    assert res.log()["weight/a"].item() == 1.0
    assert res.log()["weight/b"].item() == 0.0


@pytest.mark.filterwarnings("ignore::losskit.LossKitWarning")  # FAMO without update
@pytest.mark.parametrize("name", list(LOSS_LEVEL))
def test_state_dict_round_trip_resumes_exactly(name: str) -> None:
    torch.manual_seed(0)
    net = Net()

    def run(crit: lk.Criterion, seeds: range) -> list[torch.Tensor]:
        out = []
        for seed in seeds:
            batch = make_batch(seed)
            torch.manual_seed(seed)
            res = crit(net(batch["x"]), batch)
            out.append(torch.stack(list(res.weights.values())).detach())
            res.backward()
            crit.step()
            if name == "famo":
                with torch.no_grad():
                    crit.balancer.update(crit(net(batch["x"]), batch))  # type: ignore[operator]
        return out

    first = lk.Criterion(terms(), balancer=LOSS_LEVEL[name])  # type: ignore[arg-type]
    run(first, range(5))
    state = first.state_dict()
    resumed = lk.Criterion(terms(), balancer=LOSS_LEVEL[name])  # type: ignore[arg-type]
    resumed.load_state_dict(state)
    torch.testing.assert_close(run(resumed, range(5, 9)), run(first, range(5, 9)))


def test_gradient_balancer_state_dict_holds_no_model_parameters() -> None:
    net = Net()
    crit = lk.Criterion(terms(), balancer={"name": "upgrad", "shared": net.trunk})
    assert not any("weight" in k or "bias" in k for k in crit.state_dict())
    assert not list(crit.parameters())


@pytest.mark.filterwarnings("ignore:.*not DPP.*")
def test_nash_mtl_resumes_from_its_last_solution() -> None:
    pytest.importorskip("cvxpy")
    net = Net()
    crit = lk.Criterion(terms(), balancer={"name": "nash_mtl", "shared": net.trunk})
    batch = make_batch()
    crit(net(batch["x"]), batch).backward()
    resumed = lk.Criterion(terms(), balancer={"name": "nash_mtl", "shared": net.trunk})
    resumed.load_state_dict(crit.state_dict())
    ours = resumed.balancer.aggregator.weighting.prvs_alpha  # type: ignore[union-attr]
    theirs = crit.balancer.aggregator.weighting.prvs_alpha  # type: ignore[union-attr]
    assert ours.tolist() == theirs.tolist()
    assert ours.tolist() != [1.0, 1.0, 1.0]
    res = resumed(net(batch["x"]), batch)
    res.backward()  # the rebuilt problem solves
    assert all(torch.isfinite(w) for w in res.weights.values())


def _config(balancer: object) -> dict[str, object]:
    return {
        "model": {"source": "digits_mlp", "input": "pixels"},
        "data": {"source": "digits"},
        "terms": {
            "cls": {"loss": "cross_entropy", "input": "logits", "target": "label"},
            "aux": {"loss": "cross_entropy", "input": "logits", "target": "label", "weight": 0.5},
        },
        "optimizer": {"name": "adam", "lr": 0.003},
        "balancer": balancer,
    }


def test_config_files_name_balancers_and_tables() -> None:
    cfg = load_config(_config({"name": "magnitude", "beta": 0.9}))
    trainer, _, _ = build(cfg, progress=False)
    balancer = trainer.criterion.balancer
    assert isinstance(balancer, lk.balancers.Magnitude)
    assert balancer.beta == 0.9
    with pytest.raises(lk.ConfigError, match=r"balancer.*unknown balancer 'upgrd'"):
        load_config(_config("upgrd"))


def test_config_shared_names_a_submodule_of_the_model() -> None:
    pytest.importorskip("qpsolvers")
    model = build(load_config(_config("sum")), progress=False)[0].model
    child = next(iter(dict(model.named_children())))
    trainer, _, _ = build(load_config(_config({"name": "upgrad", "shared": child})), progress=False)
    assert isinstance(trainer.criterion.balancer, lk.balancers.Gradient)
    with pytest.raises(lk.ConfigError, match="no submodule 'nope'"):
        build(load_config(_config({"name": "upgrad", "shared": "nope"})), progress=False)
