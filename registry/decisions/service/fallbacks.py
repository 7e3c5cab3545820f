"""Fallbacks use case: the nearest active models to one model, with predicted agreement."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from registry.decisions.errors import InvalidDecisionInput
from registry.decisions.routing import predicted_agreement
from registry.decisions.schemas import FallbackRead, FallbacksRead, ReferenceQueries
from registry.decisions.service.pool import (
    _rows,
    brief,
    reference_queries,
    require_pool_rows,
    require_vectors,
)
from registry.decisions.service.provenance import REFERENCE, finish, provenance_vectors, restricting
from registry.ports import ModelFilter, ScoredId
from registry.schemas import EvaluationFilter
from registry.services.context import Context
from registry.services.similarity import rank_candidates


def fallbacks(
    ctx: Context,
    model_id: uuid.UUID,
    k: int = 5,
    flt: ModelFilter | None = None,
    *,
    same_license: bool = False,
    reference: ReferenceQueries | None = None,
    provenance: EvaluationFilter | None = None,
    rank_by: Literal["behaviour", "embedding"] = "behaviour",
) -> FallbacksRead:
    """The k nearest *active* models satisfying the hard constraints in `flt`, with predicted agreement
    (`provenance`: all vectors re-embedded from evaluations of that provenance only).

    `rank_by="behaviour"` (default, as `similar`): the max(3k, 30) nearest by vector search re-ranked by
    behaviour distance (registry.services.similarity); provenance-restricted requests rank by the
    re-embedded vectors' distance."""
    prov = restricting(provenance)
    if k < 1:
        raise InvalidDecisionInput(f"k must be at least 1, got {k}")
    row = require_pool_rows(ctx, [model_id])[model_id]
    base = flt or ModelFilter()
    licenses = base.licenses
    if same_license:
        if row.license is None:
            raise InvalidDecisionInput(f"model {model_id} has no license, so same_license cannot apply")
        licenses = (row.license,)
    query = replace(base, statuses=("active",), licenses=licenses, exclude_ids=(*base.exclude_ids, model_id))
    pv = None if prov is None else provenance_vectors(ctx, prov, query, must=[model_id])
    vec = require_vectors(ctx, [model_id])[model_id] if pv is None else pv.vector(model_id)
    by_behaviour = rank_by == "behaviour" and pv is None
    evidence: dict[uuid.UUID, dict[str, Any]] = {}
    if by_behaviour:
        pool = ctx.index.search_models(vec, max(3 * k, 30), query)
        ranked, _ = rank_candidates(ctx, model_id, [(h.id, h.distance) for h in pool], k)
        hits = [ScoredId(m, d) for m, d, _ in ranked]
        evidence = {m: ev for m, _, ev in ranked}
    else:
        hits = ctx.index.search_models(vec, k, query) if pv is None else pv.nearest(vec, k)
    rows = _rows(ctx, [h.id for h in hits])
    hits = [h for h in hits if h.id in rows]
    phi, _ = reference_queries(ctx, reference)
    agree: list[float | None] = [None] * len(hits)
    if hits and len(phi):
        cand = require_vectors(ctx, [h.id for h in hits]) if pv is None else pv.as_dict()
        z = np.stack([vec, *[cand[h.id] for h in hits]]).astype(np.float32)
        p = ctx.embedder.predict(z, phi)  # (Q, 1 + n)
        agree = [float(a) for a in predicted_agreement(p[:, 0], p[:, 1:])]
    read = FallbacksRead(
        model_id=model_id,
        fingerprint=ctx.embedder.fingerprint,
        reference_queries=len(phi),
        items=[
            FallbackRead(
                model=brief(rows[h.id]),
                distance=h.distance,
                predicted_agreement=a,
                behaviour_distance=evidence.get(h.id, {}).get("behaviour_distance"),
                shared_questions=evidence.get(h.id, {}).get("shared_questions"),
                observed_disagreement=evidence.get(h.id, {}).get("observed_disagreement"),
            )
            for h, a in zip(hits, agree, strict=True)
        ],
        ranked_by="behaviour" if by_behaviour else "embedding",
    )
    return finish(read, pv, [REFERENCE])
