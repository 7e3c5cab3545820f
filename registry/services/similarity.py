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
MAX_EVIDENCE = 512  # shared questions read per request: the rate's standard error is then <= 0.022

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
        scores = repo.model_scores(s, ids)
    vectors = ctx.index.get_model_vectors(ids)
    use = [m for m in ids if m in vectors and scores.get(m)]
    scale = None
    if len(use) > 1:
        qids = sorted({q for m in use for q, _ in scores[m]})
        col = {q: i for i, q in enumerate(qids)}
        lab = np.full((len(use), len(qids)), np.nan)  # (M, Q)
        for r, m in enumerate(use):
            lab[r, [col[q] for q, _ in scores[m]]] = [y for _, y in scores[m]]
        obs = ~np.isnan(lab)
        o = obs.astype(np.float64)
        y = np.where(obs, lab, 0.0)
        shared = o @ o.T
        # sum over shared questions of |a - b| for scores in [0, 1]: a + b - 2 min(a, b); with 0/1
        # scores min(a, b) = a * b, and soft scores are rare enough for the product to stand in
        diff = y @ o.T + o @ y.T - 2.0 * (y @ y.T)
        v = np.stack([vectors[m] for m in use]).astype(np.float64)  # (M, E)
        sq = (v * v).sum(1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * v @ v.T, 0.0))
        iu = np.triu_indices(len(use), k=1)
        keep = shared[iu] >= MIN_SHARED
        if int(keep.sum()) >= MIN_PAIRS:
            rate = diff[iu][keep] / shared[iu][keep]
            scale = slope_through_origin(dist[iu][keep], rate)
    with _lock:
        _cache[key] = scale
        while len(_cache) > 16:
            _cache.popitem(last=False)
    return scale


def rerank(
    ctx: Context, model_id: uuid.UUID, items: list[SimilarModel], k: int
) -> tuple[list[SimilarModel], float | None]:
    """The k candidates nearest by behaviour distance (see the module doc), with their evidence; the
    embedding order (first k) when no scale can be fitted yet. Evidence is read on at most
    `MAX_EVIDENCE` of the model's questions (a fixed, seeded sample), so a request stays bounded."""
    scale = distance_scale(ctx)
    with ctx.session_factory() as s:
        qids = repo.model_question_ids(s, model_id)
        if len(qids) > MAX_EVIDENCE:
            pick = np.random.default_rng(model_id.int % 2**32).choice(len(qids), MAX_EVIDENCE, replace=False)
            qids = [qids[i] for i in np.sort(pick)]
        scores = repo.model_scores_on(s, [model_id, *(it.model.id for it in items)], qids)
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
