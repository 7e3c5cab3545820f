"""Evaluation metrics for routers and model embeddings (numpy, plus sklearn/scipy for AUC and correlations).

Conventions, used by every function here:
- `pred` is a (Q, M) matrix of predicted P(correct) for Q queries x M models.
- `y` is a (Q, M) matrix of true scores in [0, 1] with NaN where a model has no label for a query.
- A score counts as "correct" when it is >= 0.5 (the shipped data is 0/1).
- Routing only ever picks among models that have a label for the query; queries with no labelled
  model are skipped. A routing "hit" is worth the best score among the picked models, which for 0/1
  labels is "any picked model is correct" and for soft scores the expected quality of the best pick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

CORRECT = 0.5


def _check_pair(pred: np.ndarray, y: np.ndarray) -> None:
    if pred.ndim != 2 or pred.shape != y.shape:
        raise ValueError(f"predictions {pred.shape} and labels {y.shape} must be (Q, M) of one shape")
    if np.isnan(pred).any():
        raise ValueError("predictions contain NaN")


def _observed(y: np.ndarray) -> np.ndarray:
    return np.asarray(~np.isnan(y))


def routing_hit_at_k(pred: np.ndarray, y: np.ndarray, k: int = 1) -> float:
    """Mean over queries of the best true score among the top-k predicted labelled models."""
    _check_pair(pred, y)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    obs = _observed(y)
    keep = obs.any(axis=1)
    if not keep.any():
        return math.nan
    labels = np.where(obs, y, -np.inf)[keep]  # (Q', M); -inf never wins the max below
    k = min(k, y.shape[1])
    # labelled models first, then by prediction; lexsort is stable, so ties go to the lower index
    top = np.lexsort((-pred[keep], ~obs[keep]), axis=1)[:, :k]  # (Q', k)
    picked = np.take_along_axis(labels, top, axis=1)  # (Q', k); -inf where fewer than k are labelled
    return float(picked.max(axis=1).mean())


def correctness_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of labelled (query, model) pairs where pred >= 0.5 agrees with the label >= 0.5."""
    _check_pair(pred, y)
    obs = _observed(y)
    if not obs.any():
        return math.nan
    return float(((pred[obs] >= CORRECT) == (y[obs] >= CORRECT)).mean())


def auc(pred: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of pred against correct/incorrect over labelled pairs (NaN when one class is absent)."""
    _check_pair(pred, y)
    obs = _observed(y)
    truth = y[obs] >= CORRECT
    if truth.all() or not truth.any():
        return math.nan
    return float(roc_auc_score(truth, pred[obs]))


def brier(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error between pred and the labels over labelled pairs."""
    _check_pair(pred, y)
    obs = _observed(y)
    if not obs.any():
        return math.nan
    return float(np.mean((pred[obs].astype(np.float64) - y[obs]) ** 2))


def model_mean_scores(y: np.ndarray) -> np.ndarray:
    """(M,) mean score of each model over its labelled queries (NaN for a model with none)."""
    if y.ndim != 2:
        raise ValueError(f"labels must be a (Q, M) matrix, got shape {y.shape}")
    obs = _observed(y)
    n = obs.sum(axis=0)
    total = np.where(obs, y, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def best_single(y_select: np.ndarray, y_test: np.ndarray, k: int = 1) -> float:
    """Routing hit@k on y_test when models are ranked by their mean score on y_select, for every query."""
    if y_select.ndim != 2 or y_test.ndim != 2 or y_select.shape[1] != y_test.shape[1]:
        raise ValueError(
            f"selection labels {y_select.shape} and test labels {y_test.shape} must share the model axis"
        )
    means = model_mean_scores(y_select)
    # a model never seen in the selection set is ranked last
    ranking = np.where(np.isnan(means), -np.inf, means)
    return routing_hit_at_k(np.broadcast_to(ranking, y_test.shape).copy(), y_test, k)


def oracle(y: np.ndarray) -> float:
    """Mean over queries of the best score of any labelled model (any model correct, for 0/1)."""
    obs = _observed(y)
    keep = obs.any(axis=1)
    if not keep.any():
        return math.nan
    return float(np.where(obs, y, -np.inf)[keep].max(axis=1).mean())


def random_choice(y: np.ndarray) -> float:
    """Expected hit@1 of a uniformly random labelled model per query."""
    obs = _observed(y)
    keep = obs.any(axis=1)
    if not keep.any():
        return math.nan
    n = obs[keep].sum(axis=1)
    return float((np.where(obs, y, 0.0)[keep].sum(axis=1) / n).mean())


def disagreement_matrix(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, M) answer-disagreement rate over questions both models answered, and the (M, M) shared counts."""
    obs = _observed(y).astype(np.float64)  # (Q, M)
    right = np.where(_observed(y), y >= CORRECT, False).astype(np.float64)
    wrong = obs - right
    shared = obs.T @ obs  # (M, M)
    agree = right.T @ right + wrong.T @ wrong
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(shared > 0, 1.0 - agree / np.maximum(shared, 1.0), np.nan)
    return rate, shared.astype(np.int64)


def pairwise_distances(z: np.ndarray) -> np.ndarray:
    """(M, M) Euclidean distances between the rows of z."""
    z = np.asarray(z, dtype=np.float64)
    sq = (z * z).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.fill_diagonal(d2, 0.0)
    return np.asarray(np.sqrt(np.maximum(d2, 0.0)))


@dataclass(frozen=True)
class Geometry:
    """How well embedding distance tracks answer disagreement over model pairs."""

    pearson: float
    spearman: float
    n_pairs: int


def distance_disagreement(z: np.ndarray, y: np.ndarray, *, min_shared: int = 20) -> Geometry:
    """Pearson and Spearman between Euclidean embedding distance and disagreement, over model pairs.

    Pairs that share fewer than `min_shared` labelled questions are skipped.
    """
    if z.ndim != 2 or z.shape[0] != y.shape[1]:
        raise ValueError(f"embeddings {z.shape} must have one row per label column of {y.shape}")
    rate, shared = disagreement_matrix(y)
    dist = pairwise_distances(z)
    iu = np.triu_indices(z.shape[0], k=1)
    keep = shared[iu] >= min_shared
    d, r = dist[iu][keep], rate[iu][keep]
    n = int(keep.sum())
    if n < 3 or np.ptp(d) == 0.0 or np.ptp(r) == 0.0:
        return Geometry(math.nan, math.nan, n)
    return Geometry(float(stats.pearsonr(d, r)[0]), float(stats.spearmanr(d, r)[0]), n)


def nn_agreement(z: np.ndarray, y: np.ndarray, *, min_shared: int = 20) -> float:
    """Mean answer agreement of each model with its nearest neighbour in embedding space.

    A model whose neighbour shares fewer than `min_shared` labelled questions with it is skipped.
    """
    if z.ndim != 2 or z.shape[0] != y.shape[1]:
        raise ValueError(f"embeddings {z.shape} must have one row per label column of {y.shape}")
    if z.shape[0] < 2:
        return math.nan
    rate, shared = disagreement_matrix(y)
    dist = pairwise_distances(z)
    np.fill_diagonal(dist, np.inf)
    nn = dist.argmin(axis=1)
    rows = np.arange(z.shape[0])
    keep = shared[rows, nn] >= min_shared
    if not keep.any():
        return math.nan
    return float((1.0 - rate[rows, nn][keep]).mean())
