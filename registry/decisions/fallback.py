"""Fallbacks: the nearest eligible models to one model, with predicted answer agreement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from registry.decisions.errors import EmptyCandidatesError, InvalidDecisionInput
from registry.decisions.routing import predicted_agreement


@dataclass(frozen=True)
class Fallback:
    index: int
    distance: float  # Euclidean distance between embeddings
    agreement: float | None  # predicted share of reference queries answered alike


def rank_fallbacks(
    target: np.ndarray,
    candidates: np.ndarray,
    *,
    k: int,
    eligible: np.ndarray | None = None,
    p_target: np.ndarray | None = None,
    p_candidates: np.ndarray | None = None,
) -> list[Fallback]:
    """The k nearest eligible candidates (N, E) to target (E,), nearest first.

    With predictions on reference queries (p_target (Q,), p_candidates (Q, N)) each fallback also
    carries its predicted answer agreement with the target.
    """
    if k < 1:
        raise InvalidDecisionInput(f"k must be at least 1, got {k}")
    c = np.asarray(candidates, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if c.ndim != 2 or t.shape != (c.shape[1],):
        raise InvalidDecisionInput(f"target {t.shape} and candidates {c.shape} have different dimensions")
    ok = np.ones(len(c), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise EmptyCandidatesError("no candidate model satisfies the constraints")
    d = np.linalg.norm(c[idx] - t, axis=1)
    order = np.argsort(d, kind="stable")[:k]
    agree = None
    if p_target is not None and p_candidates is not None:
        agree = predicted_agreement(p_target, np.asarray(p_candidates)[:, idx[order]])
    return [
        Fallback(int(idx[o]), float(d[o]), None if agree is None else float(agree[r]))
        for r, o in enumerate(order)
    ]
