"""Behaviour distance for `similar`: vector-search candidates re-ranked with the direct evidence held.

The registry holds raw scores as well as embeddings. Where two models were scored on the same
questions (the probe set makes that the normal case), their observed disagreement on them is direct
evidence of how differently they behave; the embedding distance is an estimate that needs no shared
questions. `behaviour_distance` combines both as one disagreement rate:

    (prior * distance / scale + shared * observed) / (prior + shared)

where `scale` (embedding distance per unit of disagreement) is fitted, through the origin, on pairs
of registered models that share at least `MIN_SHARED` questions, and `prior` is how many shared
questions the embedding counts as (`PRIOR_QUESTIONS`, chosen with `benchmarks.geometry`). With
nothing shared it is the embedding's estimate; with many shared questions, the observation.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

import numpy as np

from registry import repositories as repo
from registry.schemas import SimilarModel
from registry.services.context import Context

PRIOR_QUESTIONS = 64.0
MIN_SHARED = 50
SCALE_MODELS = 200  # models (by name) whose pairs fit the scale
MIN_PAIRS = 10

_cache: OrderedDict[tuple[object, ...], float | None] = OrderedDict()
_lock = threading.Lock()


def slope_through_origin(distance: np.ndarray, rate: np.ndarray) -> float | None:
    """Least-squares `scale` in distance ~ scale * rate; None without spread in the rates."""
    den = float((rate * rate).sum())
    return float((distance * rate).sum() / den) if den > 0 else None


def distance_scale(ctx: Context) -> float | None:
    """Embedding distance per unit of disagreement for the loaded encoder, fitted on registered pairs
    (cached per encoder and number of models; deterministic, so every worker finds the same)."""
    key = (id(ctx.session_factory), ctx.embedder.fingerprint, ctx.index.count_models())
    with _lock:
        if key in _cache:
            return _cache[key]
    with ctx.session_factory() as s:
        rows = repo.get_models(s, repo.iter_model_ids(s))
        ids = [r.id for r in sorted(rows.values(), key=lambda r: (r.name, str(r.id)))][:SCALE_MODELS]
        scores = {m: dict(v) for m, v in repo.model_scores(s, ids).items()}
    vectors = ctx.index.get_model_vectors(ids)
    use = [m for m in ids if m in vectors and scores.get(m)]
    dist, rate = [], []
    for i, a in enumerate(use):
        for b in use[i + 1 :]:
            qs = scores[a].keys() & scores[b].keys()
            if len(qs) >= MIN_SHARED:
                dist.append(float(np.linalg.norm(vectors[a] - vectors[b])))
                rate.append(float(np.mean([abs(scores[a][q] - scores[b][q]) for q in qs])))
    scale = slope_through_origin(np.asarray(dist), np.asarray(rate)) if len(dist) >= MIN_PAIRS else None
    with _lock:
        _cache[key] = scale
        while len(_cache) > 16:
            _cache.popitem(last=False)
    return scale


def rerank(
    ctx: Context, model_id: uuid.UUID, items: list[SimilarModel], k: int
) -> tuple[list[SimilarModel], float | None]:
    """The k candidates nearest by behaviour distance (see the module doc), with their evidence; the
    embedding order (first k) when no scale can be fitted yet."""
    scale = distance_scale(ctx)
    ids = [model_id, *(it.model.id for it in items)]
    with ctx.session_factory() as s:
        scores = {m: dict(v) for m, v in repo.model_scores(s, ids).items()}
    mine = scores.get(model_id, {})
    out = []
    for it in items:
        theirs = scores.get(it.model.id, {})
        qs = mine.keys() & theirs.keys()
        observed = float(np.mean([abs(mine[q] - theirs[q]) for q in qs])) if qs else None
        combined = None
        if scale is not None and scale > 0:
            n = len(qs)
            combined = (PRIOR_QUESTIONS * it.distance / scale + n * (observed or 0.0)) / (PRIOR_QUESTIONS + n)
        out.append(
            it.model_copy(
                update={
                    "shared_questions": len(qs),
                    "observed_disagreement": observed,
                    "behaviour_distance": combined,
                }
            )
        )
    if scale is not None and scale > 0:
        out.sort(key=lambda it: (it.behaviour_distance, it.distance))
    return out[:k], scale
