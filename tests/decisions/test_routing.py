"""Routing, predicted agreement, fallbacks and comparisons on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from registry.decisions import (
    EmptyCandidatesError,
    InvalidDecisionInput,
    compare_models,
    normalised_prices,
    predicted_agreement,
    predicted_routing_accuracy,
    rank_fallbacks,
    route,
)

P = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.95], [0.5, 0.6, 0.55]])


def test_route_picks_the_most_likely_correct_model() -> None:
    r = route(P, top_k=2)
    assert [q.chosen for q in r] == [0, 2, 1]
    assert [c.index for c in r[0].ranked] == [0, 1]
    assert r[0].ranked[0].p_correct == pytest.approx(0.9)


def test_cost_weight_trades_accuracy_for_price() -> None:
    prices = [10.0, 1.0, None]  # None: self-hosted, counts as free
    assert route(P, prices=prices, cost_weight=0.0)[0].chosen == 0
    cheap = route(P, prices=prices, cost_weight=0.5)
    assert cheap[0].chosen == 1  # 0.8 - 0.05 beats 0.9 - 0.5
    assert cheap[0].ranked[0].score == pytest.approx(0.75)
    np.testing.assert_allclose(normalised_prices(prices), [1.0, 0.1, 0.0])


def test_ranking_matches_a_stable_sort_of_every_candidate() -> None:
    # the top k are found without sorting all M: ties (here most scores) must still come in column order,
    # prices given as an array (NaN: unknown) must count as the list form does
    rng = np.random.default_rng(0)
    for _ in range(500):
        q, m = int(rng.integers(1, 4)), int(rng.integers(1, 30))
        p = rng.integers(0, 4, size=(q, m)) / 3
        prices = rng.choice([np.nan, 1.0, 2.0], size=m)
        k = int(rng.integers(1, m + 2))
        got = route(p, top_k=k, prices=prices, cost_weight=0.25)
        as_list = route(
            p, top_k=k, prices=[None if np.isnan(v) else float(v) for v in prices], cost_weight=0.25
        )
        score = p - 0.25 * normalised_prices(prices)[None, :]
        want = np.argsort(-score, axis=1, kind="stable")[:, :k]
        assert [[c.index for c in r.ranked] for r in got] == want.tolist()
        assert got == as_list


def test_unavailable_models_are_ranked_but_not_chosen() -> None:
    r = route(P, available=[False, True, True])
    assert r[0].preferred == 0 and r[0].chosen == 1
    assert r[0].ranked[0].available is False
    with pytest.raises(EmptyCandidatesError, match="available"):
        route(P, available=[False, False, False])


def test_route_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidDecisionInput, match="top_k"):
        route(P, top_k=0)
    with pytest.raises(EmptyCandidatesError):
        route(np.zeros((2, 0)))
    with pytest.raises(InvalidDecisionInput, match="2 prices for 3"):
        route(P, prices=[1.0, 2.0], cost_weight=1.0)


def test_portfolio_accuracy_is_bounded_by_the_full_pool() -> None:
    full = predicted_routing_accuracy(P)
    assert full == pytest.approx((0.9 + 0.95 + 0.6) / 3)
    assert predicted_routing_accuracy(P, [0]) < predicted_routing_accuracy(P, [0, 2]) <= full


def test_predicted_agreement() -> None:
    a = np.array([1.0, 0.0, 0.5])
    assert float(predicted_agreement(a, a.copy())) == pytest.approx((1 + 1 + 0.5) / 3)
    np.testing.assert_allclose(predicted_agreement(a, np.stack([a, 1 - a], axis=1)), [2.5 / 3, 0.5 / 3])


def test_fallbacks_are_nearest_eligible_models() -> None:
    z = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [3.0, 0.0]])
    fb = rank_fallbacks(z[0], z, k=2, eligible=np.array([False, True, False, True]))
    assert [f.index for f in fb] == [1, 3]
    assert fb[0].distance == pytest.approx(1.0)
    p = np.array([[0.9, 0.8, 0.9, 0.1]])
    fb = rank_fallbacks(
        z[0], z, k=1, eligible=np.array([False, True, True, True]), p_target=p[:, 0], p_candidates=p
    )
    assert fb[0].index == 2 and fb[0].agreement == pytest.approx(0.81 + 0.01)
    with pytest.raises(EmptyCandidatesError, match="constraints"):
        rank_fallbacks(z[0], z, k=1, eligible=np.zeros(4, dtype=bool))


def test_compare_reports_per_category_accuracy() -> None:
    c = compare_models(
        np.zeros(3), np.ones(3), np.array([1.0, 0.0, 0.5]), np.array([1.0, 1.0, 0.5]), ["a", "a", "b"]
    )
    assert c.distance == pytest.approx(np.sqrt(3))
    assert [(r.category, r.n_queries, r.a, r.b) for r in c.categories] == [
        ("a", 2, 0.5, 1.0),
        ("b", 1, 0.5, 0.5),
    ]
    assert c.predicted_agreement == pytest.approx((1 + 0 + 0.5) / 3)
    with pytest.raises(InvalidDecisionInput):
        compare_models(np.zeros(3), np.zeros(4), np.zeros(1), np.zeros(1), ["a"])
