"""MGDA's Frank-Wolfe weights solved on the host: torchjd's algorithm, iterate for iterate."""

from __future__ import annotations

import pytest
import torch
from torchjd import aggregation

import losskit as lk
from losskit.balancers._mgda import MGDA, MGDAWeighting


def _gramian(keys: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # A common direction plus noise: some keys conflict, some agree.
    rows = torch.randn(keys, 40, generator=g, dtype=torch.float64)
    rows += (
        3
        * torch.rand(1, generator=g, dtype=torch.float64)
        * torch.randn(1, 40, generator=g, dtype=torch.float64)
    )
    return rows @ rows.T


@pytest.mark.parametrize("keys", [2, 3, 5, 8, 16, 32])
@pytest.mark.parametrize("seed", range(5))
def test_the_weights_are_torchjds_frank_wolfe_weights(keys: int, seed: int) -> None:
    gramian = _gramian(keys, seed)
    # In float64 torchjd's tensor loop and the host loop take the same steps.
    torch.testing.assert_close(
        MGDAWeighting()(gramian), aggregation.MGDAWeighting()(gramian), rtol=0, atol=1e-12
    )


def test_a_tight_epsilon_finds_the_minimum_norm_point_by_hand() -> None:
    # g1, g2 orthogonal with squared norms 4 and 1: |a g1 + (1 - a) g2|^2 = 4a^2 + (1 - a)^2 is
    # least at a = 1/5.
    gramian = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(MGDAWeighting(epsilon=1e-8)(gramian), torch.tensor([0.2, 0.8]))
    # One gradient inside the other's half-space beyond it: the hull's closest point is g2.
    jacobian = torch.tensor([[3.0, 1.0], [1.0, 1.0]])
    weights = MGDAWeighting(epsilon=1e-8)(jacobian @ jacobian.T)
    torch.testing.assert_close(weights, torch.tensor([0.0, 1.0]))


def test_the_aggregator_combines_the_rows_with_the_weights() -> None:
    jacobian = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(MGDA(epsilon=1e-8)(jacobian), torch.tensor([0.4, 0.8]))


def test_the_weights_keep_the_gramians_dtype_and_device() -> None:
    gramian = _gramian(4, 0).float()
    weights = MGDAWeighting()(gramian)
    assert weights.dtype == torch.float32
    assert weights.device == gramian.device
    torch.testing.assert_close(weights, aggregation.MGDAWeighting()(gramian), rtol=0, atol=1e-3)


@pytest.mark.parametrize("bad", [{"epsilon": 0.0}, {"max_iters": 0}])
def test_bad_options_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        MGDAWeighting(**bad)  # type: ignore[arg-type]


def test_the_registered_mgda_balancer_solves_on_the_host() -> None:
    balancer = lk.balancers.Gradient("mgda", shared=torch.nn.Linear(2, 2), epsilon=0.01)
    assert isinstance(balancer.aggregator, MGDA)
    assert balancer.aggregator.gramian_weighting.epsilon == 0.01
