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

Matched-question fingerprinting. Embeddings of disjoint samples differ mostly because *different
questions* were asked, which hides the model. So a submitted sample is also compared with each
candidate on exactly the questions both were scored on: both sides are embedded from their scores on
the shared questions (canonical order: sorted by question id), and only the scores differ. Matched
thresholds come from distinct models' matched distances on random shared samples of n questions:
- `same`: the largest threshold keeping FPR <= max_fpr among those distinct-model distances;
- `related`: the `related_quantile` (default 0.10) quantile of distinct-model matched distances;
- their `tpr` is measured on simulated re-evaluations: a model's own scores on n questions against
  the same scores with `flip_rate` of them flipped (`notes["flip_rate"]`), a stand-in for the noise
  of re-running a model, since the data hold no second run of one model.
Models whose scores on the shared questions are identical are indistinguishable by construction. A
model with one constant score on every question it was evaluated on (e.g. a base model failing every
item of a benchmark) has no fingerprint: two such models always sit at matched distance 0, so pairs of
models with the same constant score are left out of the distinct pairs rather than forcing `same` to 0
for everyone; a constant-score submission cannot identify a model (it matches every such model).
"""

from __future__ import annotations

import json
import math
import zlib
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


# ---------------------------------------------------------------- matched-question comparison

MATCHED_KEY = "matched"  # key of the matched-question thresholds inside calibration.json


def save_calibration(
    path: Path | str, global_: FingerprintThresholds, matched: FingerprintThresholds | None
) -> None:
    """Write calibration.json: the global thresholds at top level (older readers keep working), the
    matched-question thresholds under `MATCHED_KEY`."""
    data = global_.to_dict()
    if matched is not None:
        data[MATCHED_KEY] = matched.to_dict()
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_calibration(path: Path | str) -> tuple[FingerprintThresholds, FingerprintThresholds | None]:
    """Read calibration.json: (global thresholds, matched thresholds or None when the file has none)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    matched = data.get(MATCHED_KEY)
    return (
        FingerprintThresholds.from_dict(data),
        None if matched is None else FingerprintThresholds.from_dict(matched),
    )


def matched_distances(
    pairs: Sequence[tuple[EvalSet, EvalSet]], embed: EmbedFn, *, batch: int = 512
) -> np.ndarray:
    """Distance between the embeddings of the two sides of each pair, both sides being scores on the
    same questions in the same order (so only the scores differ). Embeds in batches of `batch` sets."""
    out = np.zeros(len(pairs), dtype=np.float64)
    half = max(1, batch // 2)
    for start in range(0, len(pairs), half):
        part = pairs[start : start + half]
        sets: list[EvalSet] = [side for pair in part for side in pair]
        z = np.asarray(embed(sets), dtype=np.float64).reshape(len(part), 2, -1)  # (P, 2, E)
        out[start : start + len(part)] = np.linalg.norm(z[:, 0] - z[:, 1], axis=-1)
    return out


def shared_sample(shared: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """At most n of these shared question indices, seeded, in ascending (canonical) order."""
    shared = np.sort(np.asarray(shared))
    if n is None or len(shared) <= n:
        return shared
    return np.sort(np.random.default_rng(seed).choice(shared, size=n, replace=False))


def pair_seed(*parts: object) -> int:
    """A stable seed from labels (ids, names), so repeated calls judge a pair on the same questions."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def constant_rows(labels: np.ndarray) -> np.ndarray:
    """(M,) the score of models whose observed scores are all that one value (no fingerprint), NaN
    for the others (and for models without scores)."""
    lo = np.min(np.where(np.isnan(labels), np.inf, labels), axis=1)
    hi = np.max(np.where(np.isnan(labels), -np.inf, labels), axis=1)
    return np.where(hi == lo, lo, np.nan)


def distinct_matched_distances(
    labels: np.ndarray,
    phi: np.ndarray,
    embed: EmbedFn,
    *,
    n: int = 128,
    groups: Sequence[Hashable | None] | None = None,
    max_pairs: int = 3000,
    seed: int = 0,
) -> np.ndarray:
    """Matched distances of distinct models: for each pair (at most max_pairs, drawn at random), n
    random questions both were scored on, both embedded from their own scores on those questions.

    labels: (M, Q) scores, NaN where a model was not evaluated; phi: (Q, d) query encodings. Pairs in
    one group (one model under two names) are skipped; pairs sharing fewer than n questions too, and
    pairs of two models with the same constant score (see the module doc).
    """
    if n < 1:
        raise InvalidDecisionInput(f"need n >= 1, got n={n}")
    if groups is not None and len(groups) != len(labels):
        raise InvalidDecisionInput(f"{len(groups)} group labels for {len(labels)} models")
    obs = ~np.isnan(labels)  # (M, Q)
    counts = obs.astype(np.int32) @ obs.T.astype(np.int32)  # (M, M) shared questions per pair
    const = constant_rows(labels)
    cand = [
        (u, v)
        for u in range(len(labels))
        for v in range(u + 1, len(labels))
        if counts[u, v] >= n
        and (groups is None or groups[u] is None or groups[u] != groups[v])
        and const[u] != const[v]  # NaN (not constant) equals nothing
    ]
    rng = np.random.default_rng(seed)
    if len(cand) > max_pairs:
        cand = [cand[i] for i in np.sort(rng.choice(len(cand), size=max_pairs, replace=False))]
    pairs: list[tuple[EvalSet, EvalSet]] = []
    for u, v in cand:
        q = np.sort(rng.choice(np.flatnonzero(obs[u] & obs[v]), size=n, replace=False))
        pairs.append(((phi[q], labels[u, q]), (phi[q], labels[v, q])))
    return matched_distances(pairs, embed)


def flipped_distances(
    labels: np.ndarray,
    phi: np.ndarray,
    embed: EmbedFn,
    *,
    n: int = 128,
    flip_rate: float = 0.05,
    repeats: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Matched distances of simulated re-evaluations: each model's scores on n random questions it
    was scored on against the same scores with round(flip_rate * n) of them flipped (y -> 1 - y).

    Models with fewer than n scores are skipped. labels: (M, Q) with NaN = not evaluated.
    """
    if not 0.0 <= flip_rate <= 1.0:
        raise InvalidDecisionInput(f"flip_rate must be in [0, 1], got {flip_rate}")
    rng = np.random.default_rng(seed)
    flips = round(flip_rate * n)
    pairs: list[tuple[EvalSet, EvalSet]] = []
    for m in range(len(labels)):
        have = np.flatnonzero(~np.isnan(labels[m]))
        if len(have) < n:
            continue
        for _ in range(repeats):
            q = np.sort(rng.choice(have, size=n, replace=False))
            y = labels[m, q].astype(np.float32)
            y2 = y.copy()
            at = rng.choice(n, size=flips, replace=False)
            y2[at] = 1.0 - y2[at]
            pairs.append(((phi[q], y), (phi[q], y2)))
    return matched_distances(pairs, embed)


def calibrate_matched(
    labels: np.ndarray,
    phi: np.ndarray,
    embed: EmbedFn,
    *,
    n: int = 128,
    groups: Sequence[Hashable | None] | None = None,
    max_pairs: int = 3000,
    flip_rate: float = 0.05,
    max_fpr: float = 0.01,
    related_quantile: float = 0.10,
    seed: int = 0,
    notes: dict[str, Any] | None = None,
) -> tuple[FingerprintThresholds, np.ndarray, np.ndarray]:
    """Matched-question thresholds from one score matrix: (thresholds, same-side distances of
    simulated re-evaluations, distinct-model distances). See the module doc."""
    distinct = distinct_matched_distances(
        labels, phi, embed, n=n, groups=groups, max_pairs=max_pairs, seed=seed
    )
    same = flipped_distances(labels, phi, embed, n=n, flip_rate=flip_rate, seed=seed + 1)
    th = calibrate_thresholds(
        same,
        distinct,
        n_evaluations=n,
        max_fpr=max_fpr,
        related_quantile=related_quantile,
        notes={"flip_rate": flip_rate, "seed": seed, "max_pairs": max_pairs, **(notes or {})},
    )
    return th, same, distinct
