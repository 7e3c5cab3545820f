"""Side-by-side comparison of two models on a reference query set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from registry.decisions.errors import InvalidDecisionInput
from registry.decisions.routing import predicted_agreement


@dataclass(frozen=True)
class CategoryAccuracy:
    category: str
    n_queries: int
    a: float  # mean predicted P(correct) of model a
    b: float


@dataclass(frozen=True)
class Comparison:
    distance: float
    predicted_agreement: float | None  # None without reference queries
    accuracy_a: float | None
    accuracy_b: float | None
    categories: tuple[CategoryAccuracy, ...]


def compare_models(
    z_a: np.ndarray,
    z_b: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    categories: Sequence[str],
) -> Comparison:
    """Distance, predicted agreement and per-category predicted accuracy from predictions p_a, p_b (Q,)."""
    a, b = np.asarray(z_a, dtype=np.float64), np.asarray(z_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidDecisionInput(f"embeddings {a.shape} and {b.shape} must be vectors of one size")
    pa, pb = np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)
    if pa.shape != pb.shape or pa.ndim != 1 or len(categories) != len(pa):
        raise InvalidDecisionInput(
            f"{len(pa)} and {len(pb)} predictions for {len(categories)} categorised queries"
        )
    distance = float(np.linalg.norm(a - b))
    if len(pa) == 0:
        return Comparison(distance, None, None, None, ())
    cats = np.asarray(categories)
    rows = []
    for cat in sorted(set(categories)):
        sel = cats == cat
        rows.append(CategoryAccuracy(cat, int(sel.sum()), float(pa[sel].mean()), float(pb[sel].mean())))
    return Comparison(
        distance=distance,
        predicted_agreement=float(predicted_agreement(pa, pb)),
        accuracy_a=float(pa.mean()),
        accuracy_b=float(pb.mean()),
        categories=tuple(rows),
    )
