"""Item-response distances between registered models, from the scores the registry holds.

`registry.item_response` is the method: each question's difficulty from every registered model's scores on
it, a model's ability and per-group offsets from its own scores, two models compared on reference
questions in the groups both were scored in. Here a question's group is its benchmark and category as
registered. A model's fitted profile depends on its scores and on the difficulties of its questions,
so it is cached with the rest of `behaviour_cache.BehaviourCache` per registry version.

Measured in the geometry benchmark (`response_pearson`, each model known by its own random 128 scores):
lart 0.97, zeroeval 0.93, alpaca_eval_v2 0.99 against 0.93 / 0.60 / 0.98 for the accuracy difference.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from registry.item_response import (
    ResponseProfile,
    coverage,
    difficulties,
    fit_profile,
    probabilities,
    response_distance,
)

# question id -> (sum of scores, number of scores, benchmark, category), as repositories reads them
ItemStats = Mapping[uuid.UUID, tuple[float, int, str | None, str | None]]


def group_of(stat: tuple[float, int, str | None, str | None]) -> str:
    """A question's group: its benchmark and category (either may be empty; empty the same as none)."""
    return f"{stat[2] or ''}\x1f{stat[3] or ''}"


@dataclass(frozen=True)
class FittedResponse:
    """A model's ability and its offset per group it was scored in (the groups it covers)."""

    ability: float
    offsets: dict[str, float]


def fit(qids: Sequence[uuid.UUID], scores: np.ndarray, stats: ItemStats) -> FittedResponse:
    """A model's profile from its scores on these questions (in this order) and the questions' totals."""
    if not len(qids):
        return FittedResponse(0.0, {})
    rows = [stats[q] for q in qids]
    b = difficulties(np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.float64))
    # Groups numbered in order of appearance (a fit depends on which questions share a group, not on
    # the numbers): a dict instead of np.unique over the group names, about a fifth of a fit's time.
    number: dict[str, int] = {}
    groups = np.array([number.setdefault(group_of(r), len(number)) for r in rows], np.int64)
    prof = fit_profile(b, np.asarray(scores, np.float64), groups, len(number))
    return FittedResponse(prof.ability, {name: float(prof.offsets[i]) for name, i in number.items()})


@dataclass(frozen=True)
class ReferenceItems:
    """What comparisons on a model's reference questions need from their totals, computed once per
    model and registry version: each question's difficulty and group."""

    difficulty: np.ndarray  # (R,)
    names: np.ndarray  # (G,) group names
    groups: np.ndarray  # (R,) index into names


def reference_items(reference: Sequence[uuid.UUID], stats: ItemStats) -> ReferenceItems:
    rows = [stats[q] for q in reference]
    b = difficulties(np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.float64))
    names, groups = np.unique([group_of(r) for r in rows], return_inverse=True)
    return ReferenceItems(b, names, groups)


def distances(model: FittedResponse, others: Sequence[FittedResponse], items: ReferenceItems) -> np.ndarray:
    """(N,) expected disagreement of the model with each other model on its reference questions (its own
    evidence questions), counting only groups both were scored in; NaN without references."""
    if not len(items.difficulty) or not others:
        return np.full(len(others), np.nan)
    names = [str(n) for n in items.names]
    profiles = [
        ResponseProfile(
            fr.ability,
            np.array([fr.offsets.get(n, 0.0) for n in names]),
            np.array([n in fr.offsets for n in names], dtype=bool),
        )
        for fr in (model, *others)
    ]
    p, cov = probabilities(profiles, items.difficulty, items.groups), coverage(profiles, items.groups)
    return response_distance(p[0], cov[0], p[1:], cov[1:])
