"""Question-cluster profiles: a training-free behaviour vector from a model's own evaluations.

The questions a registry holds are grouped by k-means on their query encodings (L2-normalised
MiniLM vectors, so groups are topics and formats: arithmetic word problems, code tracing, ...). A
model's profile is its accuracy in each group, shrunk towards its overall accuracy by `prior`
pseudo-questions, so a group it was scored on only once or twice says little:

    profile_c = (correct_c + prior * accuracy) / (scored_c + prior)

Two models are compared by the mean absolute difference of their profiles, each group weighted by its
share of the questions (`cluster_distance`): an expected disagreement, in the same units as the
predictor's profile distance, that needs no shared questions and no training, so it reads a domain the
encoder never saw as well as one it did. Measured in the geometry benchmark (`cluster_pearson`): above
the accuracy difference on all four sources at K = 128 with 4, 8 or 16 groups and prior 2 or 8.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

N_CLUSTERS = 8
PRIOR = 2.0


def question_clusters(phi: np.ndarray, n_clusters: int = N_CLUSTERS, seed: int = 0) -> np.ndarray:
    """(Q,) group of each question from its encoding (Q, d); deterministic for the same vectors."""
    q = len(phi)
    if q == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, min(n_clusters, q))
    x = np.asarray(phi, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if k == 1:
        return np.zeros(q, dtype=np.int64)
    with threadpool_limits(limits=1):  # a request shares the CPUs; see registry.atlas.layout_of
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    return np.asarray(km.labels_, dtype=np.int64)


def cluster_profile(
    groups: np.ndarray, scores: np.ndarray, n_clusters: int, prior: float = PRIOR
) -> np.ndarray:
    """(C,) a model's shrunk accuracy per group from the groups of its scored questions and its scores
    (soft scores in [0, 1] count fractionally). All NaN when it has no scores."""
    groups = np.asarray(groups, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return np.full(n_clusters, np.nan)
    acc = float(scores.mean())
    n = np.bincount(groups, minlength=n_clusters).astype(np.float64)
    right = np.bincount(groups, weights=scores, minlength=n_clusters)
    return np.asarray((right + prior * acc) / (n + prior))


def group_weights(groups: np.ndarray, n_clusters: int) -> np.ndarray:
    """(C,) each group's share of the questions."""
    counts = np.bincount(np.asarray(groups, dtype=np.int64), minlength=n_clusters).astype(np.float64)
    return np.asarray(counts / max(1.0, float(counts.sum())))


def cluster_distance(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean |difference| of profiles: a (C,) or (M, C) against b (C,) or (N, C) broadcast as
    numpy does, reducing the last axis."""
    return np.asarray((np.abs(np.asarray(a) - np.asarray(b)) * weights).sum(axis=-1))
