"""Question-cluster profiles: what a model gets right by topic, from its own sample, with no training."""

from __future__ import annotations

import numpy as np
import pytest

from encoder.clusters import cluster_distance, cluster_profile, group_weights, question_clusters
from encoder.geometry import geometry_report
from encoder.simulate import PoolSpec, simulate_pool


def _two_topics(n: int = 200, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = np.zeros((2, d))
    centre[0, 0] = centre[1, 1] = 1.0
    return np.concatenate(
        [centre[0] + 0.05 * rng.normal(size=(n, d)), centre[1] + 0.05 * rng.normal(size=(n, d))]
    )


def test_clusters_are_the_topics_and_deterministic() -> None:
    phi = _two_topics()
    groups = question_clusters(phi, n_clusters=2)
    assert len(set(groups[:200])) == 1 and len(set(groups[200:])) == 1 and groups[0] != groups[200]
    assert np.array_equal(groups, question_clusters(phi, n_clusters=2))
    assert len(question_clusters(phi[:3], n_clusters=8)) == 3  # fewer questions than groups
    assert question_clusters(np.zeros((0, 16))).shape == (0,)


def test_same_accuracy_different_topics_are_far_apart_and_samples_of_one_model_close() -> None:
    """Two planted models with the same overall accuracy: one right on topic A only, one on topic B only.
    |acc diff| cannot tell them apart; the cluster distance can, from different random samples."""
    phi = _two_topics()
    groups = question_clusters(phi, n_clusters=2)
    truth_a = (groups == groups[0]).astype(float)  # right on topic A, wrong on B
    truth_b = 1.0 - truth_a
    rng = np.random.default_rng(1)
    w = group_weights(groups, 2)

    def profile(truth: np.ndarray) -> np.ndarray:
        q = rng.choice(len(truth), 64, replace=False)
        return cluster_profile(groups[q], truth[q], 2)

    a1, a2, b1 = profile(truth_a), profile(truth_a), profile(truth_b)
    assert float(cluster_distance(a1, a2, w)) < 0.1
    assert float(cluster_distance(a1, b1, w)) > 0.6  # true disagreement: 1.0


def test_profile_shrinks_to_overall_accuracy_where_a_group_is_barely_seen() -> None:
    groups = np.array([0, 0, 0, 0, 1])
    scores = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    p = cluster_profile(groups, scores, 3, prior=2.0)
    assert p[2] == pytest.approx(0.8)  # never seen: the overall accuracy
    assert p[1] == pytest.approx((0 + 2 * 0.8) / 3)  # one wrong answer moves it only part way
    assert np.isnan(cluster_profile(np.zeros(0, int), np.zeros(0), 3)).all()


def test_geometry_report_carries_the_cluster_distance() -> None:
    pool = simulate_pool(
        PoolSpec(n_models=12, n_questions=300, n_categories=3, query_dim=16, missing=0.0, seed=2)
    )
    rng = np.random.default_rng(0)
    q = rng.permutation(300)
    rep = geometry_report(
        lambda sets: np.stack([[s[1].mean()] for s in sets]),  # an "embedding" that knows only accuracy
        pool.labels,
        pool.phi,
        np.sort(q[:200]),
        np.sort(q[200:]),
        k=64,
        seed=0,
    )
    assert -1.0 <= rep["cluster_pearson"] <= 1.0 and rep["cluster_pearson"] == rep["cluster_pearson"]
