"""Portfolio selection over model embeddings: k-center, k-medoids (FasterPAM) and coverage-greedy.

All functions work on row indices of a (N, E) embedding matrix and Euclidean distances (the metric the
vector index uses). Every pool member is "covered" by its nearest chosen model, its representative;
excluded models cannot be chosen but are still covered. Under a budget, models without a weight
(unknown parameter count or price) cannot be chosen.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import kmedoids
import numpy as np

from registry.decisions.errors import (
    BudgetError,
    EmptyCandidatesError,
    InvalidDecisionInput,
    PortfolioSizeError,
)

Method = Literal["k-center", "k-medoids", "coverage-greedy"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass(frozen=True)
class Portfolio:
    """A chosen subset of the pool and how well it covers the rest."""

    method: str
    chosen: tuple[int, ...]  # indices, in selection order
    representative: np.ndarray  # (N,) index of each pool member's nearest chosen model
    distance: np.ndarray  # (N,) distance to that representative (0 for chosen models)
    radius: float  # max distance: every model is within `radius` of the portfolio
    mean_distance: float  # the k-medoids objective divided by N
    total_weight: float | None  # summed weight of the chosen models (None without weights)

    @property
    def left_out(self) -> tuple[int, ...]:
        """Pool indices that were not chosen."""
        chosen = set(self.chosen)
        return tuple(i for i in range(len(self.distance)) if i not in chosen)


def pairwise_distances(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances between the rows of x (N, E) and y (M, E) -> (N, M) float64."""
    a = np.asarray(x, dtype=np.float64)
    b = a if y is None else np.asarray(y, dtype=np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    out: np.ndarray = np.sqrt(np.maximum(d2, 0.0))
    if y is None:
        np.fill_diagonal(out, 0.0)
    return out


def assign(vectors: np.ndarray, chosen: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest chosen model of every row: (representative indices (N,), distances (N,))."""
    idx = np.asarray(chosen, dtype=np.int64)
    d = pairwise_distances(vectors, vectors[idx])  # (N, k)
    j = d.argmin(axis=1)
    dist = d[np.arange(len(d)), j]
    dist[idx] = 0.0  # a chosen model represents itself, even if a duplicate sits at distance 0
    rep = idx[j]
    rep[idx] = idx
    return rep, dist


def _validate(
    n: int,
    k: int | None,
    budget: float | None,
    weights: np.ndarray | None,
    include: Sequence[int],
    exclude: Sequence[int],
) -> tuple[np.ndarray, list[int]]:
    """Check the request; return (selectable mask (N,), include list)."""
    if n == 0:
        raise EmptyCandidatesError("the pool is empty: no model to choose from")
    if k is None and budget is None:
        raise InvalidDecisionInput("give a portfolio size k, a budget, or both")
    for name, ids in (("include", include), ("exclude", exclude)):
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise InvalidDecisionInput(f"{name} index {bad[0]} is outside the pool of {n} models")
    both = sorted(set(include) & set(exclude))
    if both:
        raise InvalidDecisionInput(f"model index {both[0]} is both included and excluded")
    selectable = np.ones(n, dtype=bool)
    selectable[list(exclude)] = False
    inc = list(dict.fromkeys(include))
    if budget is not None:
        if weights is None:
            raise InvalidDecisionInput("a budget needs a weight (parameter count or price) per model")
        if weights.shape != (n,):
            raise InvalidDecisionInput(f"weights have shape {weights.shape}, expected ({n},)")
        if np.any(weights[np.isfinite(weights)] < 0):
            raise InvalidDecisionInput("weights must be non-negative")
        if not budget >= 0:
            raise BudgetError(f"budget {budget} must be a non-negative number")
        unweighted = [i for i in inc if not np.isfinite(weights[i])]
        if unweighted:
            raise BudgetError(f"included model index {unweighted[0]} has no weight to count in the budget")
        selectable &= np.isfinite(weights)
        spent = float(weights[inc].sum()) if inc else 0.0
        if spent > budget:
            raise BudgetError(f"the included models alone weigh {spent:g}, over the budget of {budget:g}")
        if not inc:
            fits = selectable & (np.nan_to_num(weights, nan=np.inf) <= budget)
            if not fits.any():
                cheapest = np.nanmin(np.where(selectable, weights, np.nan)) if selectable.any() else math.nan
                raise BudgetError(
                    f"no eligible model fits the budget of {budget:g} (the lightest weighs {cheapest:g})"
                )
    n_sel = int(selectable.sum())
    if n_sel == 0:
        raise EmptyCandidatesError("every model is excluded or lacks a weight: no model to choose from")
    if k is not None:
        if k < 1:
            raise PortfolioSizeError(f"k must be at least 1, got {k}")
        if k > n_sel:
            raise PortfolioSizeError(f"k={k} is larger than the {n_sel} models that can be chosen")
        if len(inc) > k:
            raise PortfolioSizeError(f"{len(inc)} included models do not fit in a portfolio of k={k}")
    return selectable, inc


def _finish(method: str, vectors: np.ndarray, chosen: list[int], weights: np.ndarray | None) -> Portfolio:
    rep, dist = assign(vectors, chosen)
    total = float(weights[chosen].sum()) if weights is not None else None
    return Portfolio(
        method=method,
        chosen=tuple(int(c) for c in chosen),
        representative=rep,
        distance=dist,
        radius=float(dist.max()),
        mean_distance=float(dist.mean()),
        total_weight=total,
    )


def k_center(
    vectors: np.ndarray,
    selectable: np.ndarray,
    *,
    k: int | None,
    budget: float | None = None,
    weights: np.ndarray | None = None,
    include: Sequence[int] = (),
) -> list[int]:
    """Greedy farthest-first traversal (2-approximation of the minimax radius).

    Starts from the included models, else from the selectable model nearest the centroid; each step adds
    the affordable selectable model farthest from the portfolio. Never builds the N x N matrix, so it
    scales to many thousands of models; prefixes are nested, so the radius never grows with k.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    w = np.zeros(n) if weights is None else np.nan_to_num(weights, nan=np.inf)
    left = math.inf if budget is None else budget - float(w[list(include)].sum())
    limit = n if k is None else k
    chosen = list(include)
    mind = np.full(n, np.inf)
    for c in chosen:
        mind = np.minimum(mind, np.linalg.norm(x - x[c], axis=1))
    if not chosen:
        ok = selectable & (w <= left)
        d0 = np.linalg.norm(x - x.mean(axis=0), axis=1)
        first = int(np.flatnonzero(ok)[d0[ok].argmin()])
        chosen.append(first)
        left -= w[first]
        mind = np.linalg.norm(x - x[first], axis=1)
    taken = np.zeros(n, dtype=bool)
    taken[chosen] = True
    while len(chosen) < limit:
        ok = selectable & ~taken & (w <= left)
        if not ok.any():
            break
        if k is None and mind.max() == 0.0:
            break  # everything is covered exactly: more models add nothing
        nxt = int(np.flatnonzero(ok)[mind[ok].argmax()])  # argmax picks the lowest index on ties
        chosen.append(nxt)
        taken[nxt] = True
        left -= w[nxt]
        mind = np.minimum(mind, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


def k_medoids(
    dist: np.ndarray,
    selectable: np.ndarray,
    *,
    k: int,
    include: Sequence[int] = (),
    seed: int = 0,
) -> list[int]:
    """k-medoids (minimum total distance to the nearest medoid) by FasterPAM from the `kmedoids` package.

    Included models are fixed medoids: each point's distance to the free medoids is capped at its
    distance to the included ones, which makes the capped problem's loss equal the constrained loss.
    Unselectable models get an infinite-like distance as medoids, so the solver never profits from them.
    """
    n = len(dist)
    inc = list(include)
    free = k - len(inc)
    if free == 0:
        return inc
    big = float(dist.max()) * (n + 1) + 1.0
    cap = dist[:, inc].min(axis=1) if inc else np.full(n, big)  # (N,)
    can = selectable.copy()
    can[inc] = False
    if not inc and can.all():
        d = dist  # the plain problem: no copy of a possibly large matrix
    else:
        d = dist.copy()  # rows: points, columns: medoids (kmedoids' convention)
        d[:, ~can] = big
        if inc:
            np.minimum(d, cap[:, None], out=d)
        d[np.arange(n), np.arange(n)] = np.where(can, 0.0, cap)
    res = kmedoids.fasterpam(d, free, init="build", random_state=seed, n_cpu=1)
    med = [int(m) for m in res.medoids]
    # A zero-gain unselectable medoid can only appear when selectable ones tie with it; swap it out.
    spare = [int(i) for i in np.flatnonzero(can) if int(i) not in med]
    med = [m if can[m] else spare.pop(0) for m in med]
    return inc + sorted(med, key=lambda m: (cap[m] if inc else 0.0, m))


def _gains(cur: np.ndarray, dist: np.ndarray, cols: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Coverage gain sum_i max(0, cur_i - d(i, j)) of each column j in cols, in column chunks."""
    out = np.empty(len(cols))
    for s in range(0, len(cols), chunk):
        c = cols[s : s + chunk]
        out[s : s + chunk] = np.maximum(cur[:, None] - dist[:, c], 0.0).sum(axis=0)
    return out


def _ratio(gain: float, weight: float) -> float:
    if weight > 0:
        return gain / weight
    return math.inf if gain > 0 else 0.0


def coverage_greedy(
    dist: np.ndarray,
    selectable: np.ndarray,
    *,
    k: int | None,
    budget: float | None = None,
    weights: np.ndarray | None = None,
    include: Sequence[int] = (),
) -> list[int]:
    """Cost-effective greedy for facility-location coverage, with gain per unit weight.

    Coverage f(S) = sum_i (D - min_{j in S} d(i, j)), D the pool's diameter: monotone submodular, so
    gains only shrink and the greedy is evaluated lazily (Minoux): a stale gain is an upper bound.
    Each step adds the affordable model with the largest gain / weight (gain alone without weights).
    Under a budget the result is the better of that greedy set and the best single affordable model
    (Khuller, Moss and Naor), which guarantees a constant fraction of the optimum.
    """
    n = len(dist)
    w = np.ones(n) if weights is None else np.nan_to_num(weights, nan=np.inf)
    diameter = float(dist.max()) if n > 1 else 1.0
    limit = n if k is None else k
    left = math.inf if budget is None else budget - (float(w[list(include)].sum()) if include else 0.0)
    chosen = list(include)
    cur = dist[:, chosen].min(axis=1) if chosen else np.full(n, diameter)
    base = float((diameter - cur).sum())
    cols = np.flatnonzero(selectable & ~np.isin(np.arange(n), chosen) & (w <= left))
    gains = _gains(cur, dist, cols)
    # max-heap on (ratio, gain, -index): ties go to the larger gain, then the lower index
    heap = [(-_ratio(float(g), float(w[j])), -float(g), int(j)) for g, j in zip(gains, cols, strict=True)]
    heapq.heapify(heap)
    while len(chosen) < limit and heap:
        _, _, j = heapq.heappop(heap)
        if w[j] > left:
            continue  # the budget only shrinks: it never fits again
        g = float(np.maximum(cur - dist[:, j], 0.0).sum())
        entry = (-_ratio(g, float(w[j])), -g, j)
        if heap and entry > heap[0]:
            heapq.heappush(heap, entry)  # stale bound: someone else may now be better
            continue
        if k is None and g <= 0.0:
            break
        chosen.append(j)
        left -= w[j]
        cur = np.minimum(cur, dist[:, j])
    if budget is not None and not include and n > 1:
        greedy_value = float((diameter - cur).sum()) - base
        ok = np.flatnonzero(selectable & (w <= budget))
        single = diameter * n - dist.sum(axis=0)[ok]
        best = int(single.argmax())
        if single[best] > greedy_value:
            return [int(ok[best])]
    return chosen


def select_portfolio(
    vectors: np.ndarray,
    *,
    method: str = "k-center",
    k: int | None = None,
    budget: float | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    include: Sequence[int] = (),
    exclude: Sequence[int] = (),
    seed: int = 0,
) -> Portfolio:
    """Choose a portfolio of at most k models and/or within a weight budget from a (N, E) pool."""
    if method not in METHODS:
        raise InvalidDecisionInput(f"unknown portfolio method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidDecisionInput(f"embeddings must be a (N, E) matrix, got shape {x.shape}")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    selectable, inc = _validate(len(x), k, budget, w, include, exclude)
    if method == "k-center":
        chosen = k_center(x, selectable, k=k, budget=budget, weights=w, include=inc)
        return _finish(method, x, chosen, w)
    dist = pairwise_distances(x)
    if method == "coverage-greedy":
        chosen = coverage_greedy(dist, selectable, k=k, budget=budget, weights=w, include=inc)
        return _finish(method, x, chosen, w)
    if budget is None:
        assert k is not None  # _validate guarantees one of them
        return _finish(method, x, k_medoids(dist, selectable, k=k, include=inc, seed=seed), w)
    # k-medoids under a budget: the lowest-cost feasible solution over increasing k.
    assert w is not None
    best: Portfolio | None = None
    wsel = np.sort(w[selectable & ~np.isin(np.arange(len(x)), inc)])
    top = k if k is not None else int(selectable.sum())
    spent = float(w[inc].sum()) if inc else 0.0
    for size in range(max(1, len(inc)), top + 1):
        if spent + float(wsel[: size - len(inc)].sum()) > budget:
            break  # even the lightest models no longer fit
        cand = _finish(method, x, k_medoids(dist, selectable, k=size, include=inc, seed=seed), w)
        if (cand.total_weight or 0.0) <= budget and (best is None or cand.mean_distance < best.mean_distance):
            best = cand
    if best is None:  # no PAM solution fits: fall back to the budget-aware greedy
        return _finish(method, x, coverage_greedy(dist, selectable, k=k, budget=budget, weights=w), w)
    return best
