"""Verdicts from raw scores on shared questions, with a stated false-positive bound.

Two sides (a submitted endpoint and a registered model) scored on the same n questions disagree on
k of them (soft scores: k = sum |a - b|). Whether they are *the same model* is a question about the
true disagreement rate p, which the data bound: a one-sided Clopper-Pearson interval gives `lower`
and `upper` with P(p > upper) <= alpha and P(p < lower) <= alpha.

- `same`: upper < tolerance. Any model whose true disagreement with the candidate is at least
  `tolerance` is declared the same with probability at most alpha: that is the false-positive bound.
  `tolerance` never exceeds the closest disagreement that distinct registered models show at rate
  `max_fpr` (their `max_fpr` quantile), nor half the disagreement between the candidate and its
  nearest registered neighbour (`candidate_cap`): the rate is a distance on shared questions, so an
  endpoint within half of that is closer to the candidate than to any other registered model.
- `related`: the bound excludes `same` (lower >= tolerance) and the rate is below `related`, the
  disagreement that only the closest tenth of distinct registered models reach.
- `different`: lower >= related.
- `undetermined`: anything else: the questions do not decide. `questions_needed` says how many
  shared questions would decide `same` if the observed rate held.
A `same` for two candidates at once is ambiguous unless one is significantly closer on the questions
where the two candidates differ (a sign test at alpha): the others become `undetermined`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from registry.decisions.errors import InvalidDecisionInput

EvidenceVerdict = Literal["same", "related", "different", "undetermined"]


@dataclass(frozen=True)
class Tolerance:
    """How close counts as the same model, as related, and the error rate of each bound."""

    same: float  # disagreement rate below which two sides are the same model
    related: float  # disagreement rate below which they are related
    alpha: float = 0.05  # one-sided error of each confidence bound
    distinct_pairs: int = 0  # distinct registered pairs the thresholds were read from
    floor: float | None = None  # the max_fpr quantile of their disagreement (None: no data)

    def __post_init__(self) -> None:
        if not (0.0 < self.same <= self.related <= 1.0) or not 0.0 < self.alpha < 0.5:
            raise InvalidDecisionInput(
                f"need 0 < same <= related <= 1 and 0 < alpha < 0.5, got {self.same}, {self.related}, "
                f"{self.alpha}"
            )


@dataclass(frozen=True)
class SharedEvidence:
    """Disagreement of two sides on their shared questions, with one-sided confidence bounds."""

    shared: int
    disagreements: float
    rate: float
    lower: float
    upper: float


def bounds(k: float, n: int, alpha: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds (each at error alpha) on a rate from k of n (k may be soft)."""
    if n <= 0:
        return 0.0, 1.0
    k = min(max(k, 0.0), float(n))
    lo = 0.0 if k <= 0 else float(stats.beta.ppf(alpha, k, n - k + 1))
    hi = 1.0 if k >= n else float(stats.beta.ppf(1 - alpha, k + 1, n - k))
    return lo, hi


def shared_evidence(a: np.ndarray, b: np.ndarray, alpha: float) -> SharedEvidence:
    """Evidence from two score vectors on the same questions (same order)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidDecisionInput(f"score vectors must be 1-d and aligned, got {a.shape} and {b.shape}")
    n = len(a)
    k = float(np.abs(a - b).sum())
    lo, hi = bounds(k, n, alpha)
    return SharedEvidence(shared=n, disagreements=k, rate=k / n if n else math.nan, lower=lo, upper=hi)


def candidate_cap(nearest: float | None) -> float | None:
    """The per-candidate `same` tolerance: half the candidate's disagreement with its nearest registered
    neighbour (None when it has none to compare with)."""
    return None if nearest is None or not math.isfinite(nearest) else nearest / 2.0


def verdict(ev: SharedEvidence, tol: Tolerance, cap: float | None = None) -> EvidenceVerdict:
    """The verdict one comparison supports on its own (see the module doc); `cap` lowers the `same`
    tolerance for this candidate (`candidate_cap`)."""
    if ev.shared == 0:
        return "undetermined"
    same = tol.same if cap is None else min(tol.same, cap)
    if ev.upper < same:
        return "same"
    if ev.lower >= tol.related:
        return "different"
    if ev.lower >= same:  # surely not the same: how close is it?
        return "related" if ev.rate < tol.related else "different"
    return "undetermined"


def questions_needed(
    rate: float, tol: Tolerance, cap: float | None = None, limit: int = 100_000
) -> int | None:
    """Shared questions at which the observed `rate`, if it held, would prove `same` (upper < same);
    None when it cannot (the rate is not below the tolerance) or needs more than `limit`."""
    same = tol.same if cap is None else min(tol.same, cap)
    if not math.isfinite(rate) or rate >= same:
        return None

    def ok(n: int) -> bool:
        return bounds(rate * n, n, tol.alpha)[1] < same

    return smallest_deciding(ok, limit)


def smallest_deciding(ok: Callable[[int], bool], limit: int) -> int | None:
    """The smallest number of questions n >= 8 for which `ok(n)` holds (ok is monotone in n), found by
    doubling then bisection; None when even `limit` questions would not do."""
    hi = 8
    while not ok(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while lo + 1 < hi:  # smallest n in (lo, hi] that decides
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def closer_than(mine: np.ndarray, x: np.ndarray, y: np.ndarray, alpha: float) -> bool:
    """Sign test on the questions where candidates x and y differ: does the endpoint agree with x
    significantly more often than with y? Scores are read as correct at >= 0.5."""
    m, xs, ys = (np.asarray(v, dtype=np.float64) >= 0.5 for v in (mine, x, y))
    differ = xs != ys
    n = int(differ.sum())
    if n == 0:
        return False  # x and y answer alike here: nothing tells them apart
    wins = int((m[differ] == xs[differ]).sum())
    return bool(stats.binomtest(wins, n, 0.5, alternative="greater").pvalue < alpha)


def tolerance_from_pairs(
    distinct: Sequence[float] | np.ndarray,
    *,
    max_same: float = 0.10,
    max_fpr: float = 0.01,
    related_quantile: float = 0.10,
    alpha: float = 0.05,
) -> Tolerance:
    """Thresholds from the disagreement rates of distinct registered models: `same` is the smaller of
    `max_same` and their `max_fpr` quantile; `related` their `related_quantile` quantile (at least
    `same`). With no distinct pairs, `same` stays at `max_same` and `related` at twice that."""
    d = np.sort(np.asarray(distinct, dtype=np.float64))
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return Tolerance(same=max_same, related=min(1.0, 2 * max_same), alpha=alpha)
    floor = float(np.quantile(d, max_fpr, method="lower"))  # an observed pair, never interpolated up
    same = min(max_same, floor) if floor > 0 else 0.0
    related = max(float(np.quantile(d, related_quantile, method="lower")), same, 1e-6)
    return Tolerance(same=max(same, 1e-6), related=related, alpha=alpha, distinct_pairs=len(d), floor=floor)


def distinct_disagreements(labels: np.ndarray, *, min_shared: int = 50) -> np.ndarray:
    """Disagreement rates of every pair of rows of `labels` (M, Q) (NaN = not scored) sharing at least
    `min_shared` questions, leaving out pairs where both rows have one and the same constant score on
    what they share (such models have no fingerprint; see `fingerprint.constant_rows`) and pairs that
    answer every shared question alike (duplicates: one model registered twice)."""
    rate, keep = _pair_rates(labels, min_shared)
    iu = np.triu_indices(len(labels), k=1)
    return np.asarray(rate[iu][keep[iu]])


def nearest_disagreements(labels: np.ndarray, *, min_shared: int = 50) -> np.ndarray:
    """(M,) each row's smallest disagreement with another row (pairs as in `distinct_disagreements`);
    inf for a row with no such pair."""
    rate, keep = _pair_rates(labels, min_shared)
    np.fill_diagonal(keep, False)
    return np.asarray(np.where(keep, rate, np.inf).min(axis=1)) if len(labels) else np.zeros(0)


def _pair_rates(labels: np.ndarray, min_shared: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, M) disagreement rates and the mask of pairs that count (see `distinct_disagreements`)."""
    obs = ~np.isnan(labels)
    right = (np.nan_to_num(labels) >= 0.5) & obs
    o = obs.astype(np.float64)
    r = right.astype(np.float64)
    w = (obs & ~right).astype(np.float64)
    shared = o @ o.T
    agree = r @ r.T + w @ w.T
    both_right = r @ r.T
    both_wrong = w @ w.T
    # both constant on what they share: every shared answer right for both, or wrong for both
    constant_pair = (both_right == shared) | (both_wrong == shared)
    # identical answers on every shared question: one model under two names (a duplicate), not a pair
    # of distinct models; counting it would make every `same` impossible in a registry holding one
    keep = (shared >= min_shared) & ~constant_pair & (agree < shared)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = 1.0 - agree / np.maximum(shared, 1.0)
    return rate, keep
