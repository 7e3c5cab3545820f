"""Item-response profiles: how differently two models answer, read from scores alone, no training.

Pure numpy: `registry.services.response` applies it to what the registry stores, and the geometry
benchmark (`benchmarks/geometry.py`, through `encoder.geometry.geometry_report(response=...)`) measures it.

A registry holds many models' scores on the same questions, so it knows how hard each question is. A
model's chance of answering question q is modelled as

    P_m(q) = sigmoid(ability_m + offset_m[group(q)] - difficulty_q)

- `difficulty_q`: minus the logit of the mean score every registered model got on q, shrunk to 1/2 by
  `ITEM_PRIOR` pseudo-answers (`difficulties`; shrinking to the registry's mean score instead measured
  the same);
- `ability_m`: the model's level, fitted on its own scores given those difficulties, so a model that
  happened to draw hard questions is not taken for a weak one (`fit_profile`);
- `offset_m[g]`: its residual strength on a group of questions (a benchmark's category: GSM8K versus
  MATH, biology versus law), shrunk by `GROUP_PRIOR` units of information; a group it has no scores
  in is *uncovered*.

Two models are compared on reference questions (`response_distance`), only on the groups both were
scored in (what they would be asked alike), by the midpoint of the two bounds on their disagreement:
|P_a - P_b| (answers as coupled as their rates allow) and P_a(1 - P_b) + P_b(1 - P_a) (answers
independent given the question). The result is an expected disagreement rate, in the units of the
observed disagreement on shared questions. Measured in the geometry benchmark (`response_pearson`):
well above the accuracy difference on every source, including the domain no encoder trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITEM_PRIOR = 2.0  # pseudo-answers at 1/2, per question
ABILITY_RIDGE = 0.05  # ridge on a model's ability (logit units)
GROUP_PRIOR = 1.0  # information units shrinking a group offset to zero
_NEWTON_STEPS = 60
_MAX_STEP = 2.0  # logit units per Newton step: where P(correct) is ~0 or ~1 the curvature is ~0 and a
# full step would overshoot and oscillate (a model right on every very hard question)
_EPS = 1e-3


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x).clip(-60.0, 60.0))))


def difficulties(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(Q,) difficulty of each question from the sum and count of the scores it received (all models)."""
    p = (np.asarray(sums, np.float64) + ITEM_PRIOR * 0.5) / (np.asarray(counts, np.float64) + ITEM_PRIOR)
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log1p(-p) - np.log(p))


@dataclass(frozen=True)
class ResponseProfile:
    """A model's ability, its offset per group and which groups it was scored in."""

    ability: float
    offsets: np.ndarray  # (G,)
    covered: np.ndarray  # (G,) bool


def fit_profile(
    difficulty: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_groups: int
) -> ResponseProfile:
    """A model's profile from the difficulties of the questions it was scored on, its scores (in [0, 1])
    and their groups (ints < n_groups). Deterministic; no scores gives ability 0, nothing covered."""
    b = np.asarray(difficulty, np.float64)
    y = np.asarray(scores, np.float64)
    g = np.asarray(groups, np.int64)
    if len(y) == 0:
        return ResponseProfile(0.0, np.zeros(n_groups), np.zeros(n_groups, dtype=bool))
    theta = 0.0
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(theta - b)
        grad = float((y - p).sum()) - ABILITY_RIDGE * theta
        hess = float((p * (1 - p)).sum()) + ABILITY_RIDGE
        step = min(max(grad / hess, -_MAX_STEP), _MAX_STEP)  # a float: np.clip's dispatch cost more
        theta += step
        if abs(step) < 1e-8:
            break
    p = _sigmoid(theta - b)
    resid = np.bincount(g, weights=y - p, minlength=n_groups)
    info = np.bincount(g, weights=p * (1 - p), minlength=n_groups)
    covered = np.bincount(g, minlength=n_groups) > 0
    return ResponseProfile(float(theta), resid / (info + GROUP_PRIOR), covered)


def probabilities(profiles: list[ResponseProfile], difficulty: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(M, R) each model's P(correct) on reference questions of these difficulties and groups."""
    b = np.asarray(difficulty, np.float64)
    g = np.asarray(groups, np.int64)
    if not profiles:
        return np.zeros((0, len(b)))
    ability = np.array([pr.ability for pr in profiles])[:, None]
    offsets = np.stack([pr.offsets[g] for pr in profiles]) if len(b) else np.zeros((len(profiles), 0))
    return _sigmoid(ability + offsets - b[None, :])


def coverage(profiles: list[ResponseProfile], groups: np.ndarray) -> np.ndarray:
    """(M, R) whether each model was scored in each reference question's group."""
    g = np.asarray(groups, np.int64)
    if not profiles:
        return np.zeros((0, len(g)), dtype=bool)
    return np.stack([pr.covered[g] for pr in profiles]) if len(g) else np.zeros((len(profiles), 0), bool)


def response_distance(pa: np.ndarray, cov_a: np.ndarray, pb: np.ndarray, cov_b: np.ndarray) -> np.ndarray:
    """Expected disagreement of model a (pa, cov_a: (R,)) with each model b (pb, cov_b: (N, R)) on the
    reference questions in groups both cover (all of them when they share no group): (N,)."""
    pa = np.asarray(pa, np.float64)[None, :]
    pb = np.atleast_2d(np.asarray(pb, np.float64))
    both = np.asarray(cov_a, bool)[None, :] & np.atleast_2d(np.asarray(cov_b, bool))
    if pb.shape[1] == 0:
        return np.full(len(pb), np.nan)
    mid = (np.abs(pa - pb) + pa * (1 - pb) + pb * (1 - pa)) / 2.0
    n_both = both.sum(axis=1)
    on_both = (mid * both).sum(axis=1) / np.maximum(n_both, 1)
    return np.asarray(np.where(n_both > 0, on_both, mid.mean(axis=1)))


def pairwise_response_distance(p: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(M, M) `response_distance` between every two of M models (p, cov: (M, R))."""
    return np.stack([response_distance(p[i], cov[i], p, cov) for i in range(len(p))])


def response_distances(
    labels: np.ndarray, samples: list[np.ndarray], groups: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """(M, M) item-response distance between models known by their own samples:
    question difficulties from all the sampled scores, each model's profile from its sample, compared on
    the `reference` questions."""
    n_q = labels.shape[1]
    sums, counts = np.zeros(n_q), np.zeros(n_q)
    for m, q in enumerate(samples):
        np.add.at(sums, q, labels[m, q])
        np.add.at(counts, q, 1.0)
    b = difficulties(sums, counts)
    n_groups = int(groups.max()) + 1 if len(groups) else 1
    profiles = [fit_profile(b[q], labels[m, q], groups[q], n_groups) for m, q in enumerate(samples)]
    p = probabilities(profiles, b[reference], groups[reference])
    return pairwise_response_distance(p, coverage(profiles, groups[reference]))
