"""Routing from a (Q, M) matrix of predicted P(correct), and what a portfolio keeps of the full pool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from registry.decisions.errors import EmptyCandidatesError, InvalidDecisionInput


def _matrix(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise InvalidDecisionInput(f"predictions must be a (Q, M) matrix, got shape {p.shape}")
    if p.shape[1] == 0:
        raise EmptyCandidatesError("no candidate models to route to")
    return p


def predicted_routing_accuracy(p: np.ndarray, subset: Sequence[int] | None = None) -> float:
    """Expected hit@1 when each query goes to the subset's model with the highest predicted P(correct).

    p is (Q, M); the value is the mean over queries of that model's predicted P(correct).
    """
    p = _matrix(p)
    if p.shape[0] == 0:
        raise InvalidDecisionInput("no reference queries to estimate routing accuracy on")
    cols = np.arange(p.shape[1]) if subset is None else np.asarray(subset, dtype=np.int64)
    if len(cols) == 0:
        raise EmptyCandidatesError("the portfolio is empty")
    return float(p[:, cols].max(axis=1).mean())


def predicted_agreement(p_a: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """Predicted share of queries two models answer alike (both right or both wrong).

    p_a (Q,) against p_b (Q,) -> scalar array, or against (Q, M) -> (M,); answers are treated as
    independent given the predictions: P(agree) = p_a p_b + (1 - p_a)(1 - p_b), averaged over queries.
    """
    a = np.asarray(p_a, dtype=np.float64)
    b = np.asarray(p_b, dtype=np.float64)
    if a.ndim != 1 or b.shape[0] != a.shape[0]:
        raise InvalidDecisionInput(f"predictions {a.shape} and {b.shape} must share the query axis")
    if b.ndim == 2:
        a = a[:, None]
    return np.asarray((a * b + (1.0 - a) * (1.0 - b)).mean(axis=0))


def normalised_prices(prices: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Prices scaled to [0, 1] by the largest known price; an unknown price counts as 0 (self-hosted)."""
    if isinstance(prices, np.ndarray):  # NaN: unknown (`Pool.prices`)
        x = prices.astype(np.float64)
    else:
        x = np.array([np.nan if v is None else float(v) for v in prices], dtype=np.float64)
    if np.any(x[np.isfinite(x)] < 0):
        raise InvalidDecisionInput("prices must be non-negative")
    x = np.where(np.isfinite(x), x, 0.0)
    top = x.max() if len(x) else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) the k best columns of each row, best first, ties by column: what a stable sort of each whole
    row gives, without sorting all M columns (only those scoring at least the row's k-th best)."""
    q, m = score.shape
    if k >= m or not np.isfinite(score).all():
        return np.argsort(-score, axis=1, kind="stable")[:, :k]
    out = np.empty((q, k), dtype=np.int64)
    kth = -np.partition(-score, k - 1, axis=1)[:, k - 1]  # (Q,) the k-th best score of each row
    for i in range(q):
        cand = np.flatnonzero(score[i] >= kth[i])  # in column order, which the stable sort keeps for ties
        out[i] = cand[np.argsort(-score[i, cand], kind="stable")][:k]
    return out


@dataclass(frozen=True)
class RankedCandidate:
    index: int
    p_correct: float
    score: float  # p_correct - cost_weight * normalised price
    available: bool


@dataclass(frozen=True)
class QueryRoute:
    """The routing decision for one query."""

    ranked: tuple[RankedCandidate, ...]  # the top_k candidates by score, available or not
    preferred: int  # best score over all candidates
    chosen: int  # best score over the available candidates


def route(
    p: np.ndarray,
    *,
    prices: Sequence[float | None] | np.ndarray | None = None,
    cost_weight: float = 0.0,
    top_k: int = 3,
    available: Sequence[bool] | np.ndarray | None = None,
) -> list[QueryRoute]:
    """Rank the M candidates of each of Q queries by p - cost_weight * normalised price.

    The chosen model is the best available one; `preferred` differs from it when the best model is down.
    """
    p = _matrix(p)
    q, m = p.shape
    if top_k < 1:
        raise InvalidDecisionInput(f"top_k must be at least 1, got {top_k}")
    if cost_weight < 0:
        raise InvalidDecisionInput(f"cost_weight must be non-negative, got {cost_weight}")
    cost = np.zeros(m) if prices is None else normalised_prices(prices)
    if cost.shape != (m,):
        raise InvalidDecisionInput(f"{len(cost)} prices for {m} candidates")
    avail = np.ones(m, dtype=bool) if available is None else np.asarray(available, dtype=bool)
    if avail.shape != (m,):
        raise InvalidDecisionInput(f"{len(avail)} availability flags for {m} candidates")
    if not avail.any():
        raise EmptyCandidatesError("none of the candidate models is available")
    score = p - cost_weight * cost[None, :]  # (Q, M)
    order = _top(score, min(top_k, m))  # (Q, k)
    chosen = np.where(avail[None, :], score, -np.inf).argmax(axis=1)  # (Q,)
    preferred = score.argmax(axis=1)
    out = []
    for i in range(q):
        ranked = tuple(
            RankedCandidate(int(j), float(p[i, j]), float(score[i, j]), bool(avail[j])) for j in order[i]
        )
        out.append(QueryRoute(ranked=ranked, preferred=int(preferred[i]), chosen=int(chosen[i])))
    return out
