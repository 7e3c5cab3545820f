"""Item-response profiles: behaviour from scores alone, with question difficulty the registry knows."""

from __future__ import annotations

import numpy as np
import pytest

from encoder.geometry import correlations, geometry_report, own_samples
from encoder.metrics import disagreement_matrix
from encoder.simulate import PoolSpec, simulate_pool
from registry.item_response import (
    coverage,
    difficulties,
    fit_profile,
    probabilities,
    response_distance,
    response_distances,
)


def test_difficulty_is_shrunk_to_one_half_and_orders_questions() -> None:
    b = difficulties(np.array([9.0, 1.0, 0.0]), np.array([10.0, 10.0, 0.0]))
    assert b[0] < 0 < b[1]  # answered by most: easy; by few: hard
    assert b[2] == pytest.approx(0.0)  # never answered: the prior, 1/2
    assert difficulties(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(-np.log(2.0))  # 2/3


def test_ability_accounts_for_the_difficulty_of_the_questions_drawn() -> None:
    """Two models with the same raw accuracy: the one that drew harder questions is the stronger."""
    b_easy, b_hard = np.full(40, -2.0), np.full(40, 2.0)
    scores = np.r_[np.ones(20), np.zeros(20)]
    g = np.zeros(40, dtype=np.int64)
    on_easy = fit_profile(b_easy, scores, g, 1)
    on_hard = fit_profile(b_hard, scores, g, 1)
    assert on_hard.ability > on_easy.ability + 3.0
    empty = fit_profile(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), 2)
    assert empty.ability == 0.0 and not empty.covered.any()


def test_ability_converges_where_every_question_is_far_too_hard_or_too_easy() -> None:
    """Regression: undamped Newton steps oscillated (to |ability| ~ 1e4, overflowing exp) for a model
    right on every question that almost no model answers."""
    g = np.zeros(1024, dtype=np.int64)
    for b, y in ((np.full(1024, 7.0), np.ones(1024)), (np.full(1024, -7.0), np.zeros(1024))):
        prof = fit_profile(b, y, g, 1)
        p = 1.0 / (1.0 + np.exp(-(prof.ability - b)))
        grad = float((y - p).sum()) - 0.05 * prof.ability  # ABILITY_RIDGE: at the optimum, zero
        assert abs(prof.ability) < 60 and abs(grad) < 1e-6
        assert (prof.ability > 7.0) == bool(y[0])


def test_same_accuracy_different_groups_are_far_apart_and_samples_of_one_model_close() -> None:
    """Planted: model A right on group 0 only, model B on group 1 only (same accuracy). |acc diff| is 0;
    the response distance, from different random samples, separates them and keeps A's samples close."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 200)
    truth = {"a": (groups == 0).astype(float), "b": (groups == 1).astype(float)}
    b = np.zeros(400)  # every question answered by half the models

    def sample(name: str):  # type: ignore[no-untyped-def]
        q = rng.choice(400, 64, replace=False)
        return fit_profile(b[q], truth[name][q], groups[q], 2)

    a1, a2, b1 = sample("a"), sample("a"), sample("b")
    p = probabilities([a1, a2, b1], b, groups)
    cov = coverage([a1, a2, b1], groups)
    d = response_distance(p[0], cov[0], p[1:], cov[1:])
    assert d[0] < 0.35 < 0.65 < d[1]  # true disagreement: 0 and 1


def test_compared_only_on_the_groups_both_were_scored_in() -> None:
    groups = np.repeat([0, 1], 50)
    b = np.zeros(100)
    a = fit_profile(b[:60], np.r_[np.ones(50), np.zeros(10)], groups[:60], 2)  # both groups
    only0 = fit_profile(b[:50], np.ones(50), groups[:50], 2)  # group 0 only, all right
    p, cov = probabilities([a, only0], b, groups), coverage([a, only0], groups)
    assert cov[1, 50:].sum() == 0
    on_shared = response_distance(p[0], cov[0], p[1:], cov[1:])[0]
    on_group0 = response_distance(p[0, :50], cov[0, :50], p[1:, :50], cov[1:, :50])[0]
    assert on_shared == pytest.approx(on_group0)  # group 1, where only `a` was scored, does not count
    none = fit_profile(b[:50], np.ones(50), np.zeros(50, np.int64), 2)
    other = fit_profile(b[50:], np.ones(50), np.ones(50, np.int64), 2)
    p2, cov2 = probabilities([none, other], b, groups), coverage([none, other], groups)
    both_all = response_distance(p2[0], cov2[0], p2[1:], cov2[1:])[0]
    pa, pb = p2[0], p2[1]  # no group in common: every reference question counts
    assert both_all == pytest.approx(float(((np.abs(pa - pb) + pa * (1 - pb) + pb * (1 - pa)) / 2).mean()))


def test_response_distance_tracks_disagreement_better_than_accuracy_on_a_simulated_pool() -> None:
    pool = simulate_pool(
        PoolSpec(n_models=30, n_questions=600, n_categories=4, query_dim=16, missing=0.0, seed=3)
    )
    rng = np.random.default_rng(0)
    q = rng.permutation(600)
    train, test = np.sort(q[:400]), np.sort(q[400:])
    samples = own_samples(pool.labels, train, 128, rng)  # among the questions each model was scored on
    groups = np.asarray(pool.categories, dtype=np.int64)
    d = response_distances(pool.labels, samples, groups, train)
    rate, shared = disagreement_matrix(pool.labels[:, test].T)
    acc = np.array([pool.labels[m, s].mean() for m, s in enumerate(samples)])
    pairs = np.triu(shared >= 20, 1)
    r_resp = correlations(d[pairs], rate[pairs])[0]
    r_acc = correlations(np.abs(acc[:, None] - acc[None])[pairs], rate[pairs])[0]
    assert r_resp > r_acc + 0.05, (r_resp, r_acc)


def test_geometry_report_carries_the_response_distance_on_the_categories_it_was_given() -> None:
    """Regression: the report once overwrote `groups` with its k-means clusters before the response
    distance read them (zeroeval held-out 0.78 instead of 0.90)."""
    pool = simulate_pool(
        PoolSpec(n_models=12, n_questions=300, n_categories=3, query_dim=16, missing=0.0, seed=2)
    )
    cats = np.asarray(pool.categories, dtype=np.int64)
    seen: list[np.ndarray] = []

    def spy(labels: np.ndarray, samples: list[np.ndarray], groups: np.ndarray, ref: np.ndarray) -> np.ndarray:
        seen.append(groups.copy())
        return response_distances(labels, samples, groups, ref)

    q = np.random.default_rng(0).permutation(300)
    rep = geometry_report(
        lambda sets: np.stack([[s[1].mean()] for s in sets]),
        pool.labels,
        pool.phi,
        np.sort(q[:200]),
        np.sort(q[200:]),
        k=64,
        seed=0,
        groups=cats,
        response=spy,
    )
    assert -1.0 <= rep["response_pearson"] <= 1.0 and -1.0 <= rep["response_one_group_pearson"] <= 1.0
    assert np.array_equal(seen[0], cats)  # the response column; then the one-group comparison
    assert len(seen) >= 2 and not seen[1].any()
