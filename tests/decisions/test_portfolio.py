"""Portfolio selection: k-center, k-medoids and coverage-greedy on planted geometry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from registry.decisions import (
    BudgetError,
    EmptyCandidatesError,
    InvalidDecisionInput,
    PortfolioSizeError,
    pairwise_distances,
    select_portfolio,
)


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(5, 8))
    return np.concatenate([c + rng.normal(scale=0.3, size=(12, 8)) for c in centres])  # (60, 8)


@pytest.mark.parametrize("method", ["k-center", "k-medoids", "coverage-greedy"])
def test_chosen_models_cover_every_planted_cluster(pool: np.ndarray, method: str) -> None:
    p = select_portfolio(pool, method=method, k=5)
    assert len(set(p.chosen)) == 5
    assert sorted({c // 12 for c in p.chosen}) == [0, 1, 2, 3, 4]
    assert p.radius < 3.0  # within-cluster spread, far below the cluster separation
    assert p.distance[list(p.chosen)].tolist() == [0.0] * 5
    # representative is the nearest chosen model and the distance is real
    d = pairwise_distances(pool, pool[list(p.chosen)])
    np.testing.assert_allclose(p.distance, d.min(axis=1), atol=1e-9)
    assert set(p.left_out) | set(p.chosen) == set(range(60))


def test_k_center_radius_is_non_increasing_in_k(pool: np.ndarray) -> None:
    radii = [select_portfolio(pool, method="k-center", k=k).radius for k in range(1, 31)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(radii))
    assert radii[-1] < radii[0]


@pytest.mark.parametrize("k", [1, 3, 5, 8, 15])
def test_k_medoids_cost_not_above_k_center(pool: np.ndarray, k: int) -> None:
    kc = select_portfolio(pool, method="k-center", k=k)
    km = select_portfolio(pool, method="k-medoids", k=k)
    assert km.mean_distance <= kc.mean_distance + 1e-9


def test_k_medoids_finds_the_brute_force_optimum_on_a_small_pool() -> None:
    x = np.random.default_rng(3).normal(size=(10, 3))
    d = pairwise_distances(x)
    best = min(itertools.combinations(range(10), 3), key=lambda s: d[:, list(s)].min(axis=1).sum())
    p = select_portfolio(x, method="k-medoids", k=3)
    assert p.mean_distance * 10 == pytest.approx(d[:, list(best)].min(axis=1).sum())


@pytest.mark.parametrize("method", ["k-center", "k-medoids", "coverage-greedy"])
def test_include_and_exclude_are_honoured(pool: np.ndarray, method: str) -> None:
    p = select_portfolio(pool, method=method, k=6, include=[0, 1], exclude=list(range(24, 36)))
    assert {0, 1} <= set(p.chosen)
    assert not set(p.chosen) & set(range(24, 36))
    # excluded models are still covered: their representative sits in another cluster, far away
    assert p.distance[24:36].min() > 3.0


def test_k_medoids_with_include_optimises_the_constrained_cost() -> None:
    x = np.random.default_rng(5).normal(size=(9, 2))
    d = pairwise_distances(x)
    best = min(
        ((0, *s) for s in itertools.combinations(range(1, 9), 2) if 4 not in s),
        key=lambda s: d[:, list(s)].min(axis=1).sum(),
    )
    p = select_portfolio(x, method="k-medoids", k=3, include=[0], exclude=[4])
    assert p.chosen[0] == 0 and 4 not in p.chosen
    assert p.mean_distance * 9 == pytest.approx(d[:, list(best)].min(axis=1).sum())


@pytest.mark.parametrize("method", ["k-center", "k-medoids", "coverage-greedy"])
def test_budget_is_respected(pool: np.ndarray, method: str) -> None:
    weights = np.linspace(1.0, 60.0, 60)
    for budget in (5.0, 40.0, 150.0):
        p = select_portfolio(pool, method=method, budget=budget, weights=weights)
        assert p.total_weight is not None and p.total_weight <= budget
        assert len(p.chosen) >= 1


def test_coverage_greedy_prefers_cheap_models_per_unit_of_weight() -> None:
    # two tight clusters; in each, one expensive and one cheap model at the same place
    x = np.array([[0.0, 0.0], [0.0, 0.01], [10.0, 0.0], [10.0, 0.01]])
    w = np.array([100.0, 1.0, 100.0, 1.0])
    p = select_portfolio(x, method="coverage-greedy", budget=10.0, weights=w)
    assert sorted(p.chosen) == [1, 3]


def test_unweighted_models_cannot_be_chosen_under_a_budget(pool: np.ndarray) -> None:
    w = np.full(60, np.nan)
    w[:12] = 1.0
    p = select_portfolio(pool, method="k-center", budget=100.0, weights=w)
    assert set(p.chosen) <= set(range(12))


def test_bad_requests_name_the_problem(pool: np.ndarray) -> None:
    with pytest.raises(PortfolioSizeError, match="k=61"):
        select_portfolio(pool, k=61)
    with pytest.raises(PortfolioSizeError, match="at least 1"):
        select_portfolio(pool, k=0)
    with pytest.raises(BudgetError, match="lightest weighs 5"):
        select_portfolio(pool, budget=1.0, weights=np.full(60, 5.0))
    with pytest.raises(InvalidDecisionInput, match="index 3 is both"):
        select_portfolio(pool, k=3, include=[3], exclude=[3])
    with pytest.raises(InvalidDecisionInput, match="index 99"):
        select_portfolio(pool, k=3, exclude=[99])
    with pytest.raises(InvalidDecisionInput, match="'pam'"):
        select_portfolio(pool, k=3, method="pam")
    with pytest.raises(EmptyCandidatesError):
        select_portfolio(np.zeros((0, 4)), k=1)
    with pytest.raises(EmptyCandidatesError):
        select_portfolio(pool[:2], k=1, exclude=[0, 1])


def eager_coverage_greedy(d: np.ndarray, k: int) -> list[int]:
    """Reference: recompute every gain at every step."""
    cur = np.full(len(d), d.max())
    chosen: list[int] = []
    for _ in range(k):
        gains = np.maximum(cur[:, None] - d, 0.0).sum(axis=0)
        gains[chosen] = -1.0
        j = int(gains.argmax())
        chosen.append(j)
        cur = np.minimum(cur, d[:, j])
    return chosen


def test_lazy_coverage_greedy_matches_the_eager_greedy() -> None:
    x = np.random.default_rng(11).normal(size=(80, 5))
    p = select_portfolio(x, method="coverage-greedy", k=10)
    assert list(p.chosen) == eager_coverage_greedy(pairwise_distances(x), 10)
