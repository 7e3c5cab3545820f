"""Fingerprinting: is the model behind some evaluations one we know? Thresholds calibrated from data.

Calibration embeds, for every model with at least 2n evaluations, `repeats` pairs of disjoint random
samples of n evaluations. Distances between the two samples of one model are "same" pairs; distances
between samples of two distinct models are "distinct" pairs (models sharing a group label, e.g. one
model under two prompts, are neither: they are reported as "related" pairs). Then
- `same`: distance below the largest threshold that keeps the false-positive rate on distinct pairs
  <= max_fpr;
- `related`: from there up to the `related_quantile` quantile of distinct-pair distances (closer than
  most pairs of distinct models);
- anything farther is `different`.
Thresholds hold for embeddings from n evaluations; larger sets embed with less sampling noise, so
`same` is then conservative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from registry.decisions.errors import InvalidDecisionInput

Verdict = Literal["same", "related", "different"]
EvalSet = tuple[np.ndarray, np.ndarray]  # (phi (n, d), scores (n,))
EmbedFn = Callable[[Sequence[EvalSet]], np.ndarray]


@dataclass(frozen=True)
class FingerprintThresholds:
    """Distance thresholds for the three verdicts and the evidence they were computed from."""

    same: float  # distance < same -> "same"
    related: float  # same <= distance < related -> "related"; otherwise "different"
    n_evaluations: int = 128
    max_fpr: float = 0.01
    related_quantile: float = 0.10
    tpr: float | None = None  # share of same-model pairs below `same` at calibration
    fpr: float | None = None  # share of distinct-model pairs below `same` at calibration
    n_same_pairs: int = 0
    n_distinct_pairs: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 <= self.same <= self.related) or math.isnan(self.related):
            raise InvalidDecisionInput(
                f"thresholds need 0 <= same <= related, got same={self.same}, related={self.related}"
            )

    def verdict(self, distance: float) -> Verdict:
        """Classify one embedding distance."""
        if distance < self.same:
            return "same"
        if distance < self.related:
            return "related"
        return "different"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FingerprintThresholds:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> FingerprintThresholds:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class CalibrationSample:
    """Embedding distances of sample pairs: one model twice, distinct models, related models."""

    same: np.ndarray
    distinct: np.ndarray
    related: np.ndarray
    models_used: int


def sample_pair_distances(
    sets: Sequence[EvalSet],
    embed: EmbedFn,
    *,
    n: int = 128,
    repeats: int = 3,
    groups: Sequence[Hashable | None] | None = None,
    seed: int = 0,
) -> CalibrationSample:
    """Distances between embeddings of disjoint n-samples of each model's evaluations (see module doc)."""
    if n < 1 or repeats < 1:
        raise InvalidDecisionInput(f"need n >= 1 and repeats >= 1, got n={n}, repeats={repeats}")
    if groups is not None and len(groups) != len(sets):
        raise InvalidDecisionInput(f"{len(groups)} group labels for {len(sets)} models")
    rng = np.random.default_rng(seed)
    used = [i for i, (_, y) in enumerate(sets) if len(y) >= 2 * n]
    if len(used) < 2:
        raise InvalidDecisionInput(
            f"calibration needs at least 2 models with {2 * n} evaluations, found {len(used)}"
        )
    batch: list[EvalSet] = []
    for i in used:
        phi, y = sets[i]
        for _ in range(repeats):
            perm = rng.permutation(len(y))
            a, b = np.sort(perm[:n]), np.sort(perm[n : 2 * n])
            batch += [(phi[a], y[a]), (phi[b], y[b])]
    z = np.asarray(embed(batch), dtype=np.float64).reshape(len(used), repeats, 2, -1)  # (U, R, 2, E)
    same = np.linalg.norm(z[:, :, 0] - z[:, :, 1], axis=-1).ravel()
    distinct: list[np.ndarray] = []
    related: list[np.ndarray] = []
    for u in range(len(used)):
        # first sample of model u against the second sample of every later model: independent draws
        d = np.linalg.norm(z[u, :, 0][None] - z[u + 1 :, :, 1], axis=-1)  # (U - u - 1, R)
        for v_off, row in enumerate(d):
            v = u + 1 + v_off
            g_u = groups[used[u]] if groups is not None else None
            g_v = groups[used[v]] if groups is not None else None
            (related if g_u is not None and g_u == g_v else distinct).append(row)
    return CalibrationSample(
        same=same, distinct=_concat(distinct), related=_concat(related), models_used=len(used)
    )


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def calibrate_thresholds(
    same: np.ndarray,
    distinct: np.ndarray,
    *,
    n_evaluations: int,
    max_fpr: float = 0.01,
    related_quantile: float = 0.10,
    notes: dict[str, Any] | None = None,
) -> FingerprintThresholds:
    """Pick `same` and `related` thresholds from same-model and distinct-model pair distances."""
    s = np.sort(np.asarray(same, dtype=np.float64))
    d = np.sort(np.asarray(distinct, dtype=np.float64))
    if len(s) == 0 or len(d) == 0:
        raise InvalidDecisionInput("calibration needs at least one same-model and one distinct-model pair")
    if not 0.0 <= max_fpr < 1.0 or not 0.0 < related_quantile < 1.0:
        raise InvalidDecisionInput(
            f"max_fpr must be in [0, 1) and related_quantile in (0, 1), got {max_fpr}, {related_quantile}"
        )
    allowed = math.floor(max_fpr * len(d))  # distinct pairs that may fall below the threshold
    same_t = float(d[allowed])  # strictly below d[allowed]: at most `allowed` distinct pairs
    related_t = max(same_t, float(np.quantile(d, related_quantile)))
    return FingerprintThresholds(
        same=same_t,
        related=related_t,
        n_evaluations=n_evaluations,
        max_fpr=max_fpr,
        related_quantile=related_quantile,
        tpr=float((s < same_t).mean()),
        fpr=float((d < same_t).mean()),
        n_same_pairs=len(s),
        n_distinct_pairs=len(d),
        notes=dict(notes or {}),
    )


def calibrate(
    sets: Sequence[EvalSet],
    embed: EmbedFn,
    *,
    n: int = 128,
    repeats: int = 3,
    groups: Sequence[Hashable | None] | None = None,
    max_fpr: float = 0.01,
    related_quantile: float = 0.10,
    seed: int = 0,
) -> tuple[FingerprintThresholds, CalibrationSample]:
    """Sample pair distances from these models' evaluations and calibrate thresholds on them."""
    sample = sample_pair_distances(sets, embed, n=n, repeats=repeats, groups=groups, seed=seed)
    th = calibrate_thresholds(
        sample.same,
        sample.distinct,
        n_evaluations=n,
        max_fpr=max_fpr,
        related_quantile=related_quantile,
        notes={"models": sample.models_used, "repeats": repeats, "seed": seed},
    )
    return th, sample
