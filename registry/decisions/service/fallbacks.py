"""Fallbacks use case: the nearest active models to one model, with predicted agreement."""

from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np

from registry.decisions.errors import InvalidDecisionInput
from registry.decisions.routing import predicted_agreement
from registry.decisions.schemas import FallbackRead, FallbacksRead, ReferenceQueries
from registry.decisions.service.pool import _rows, brief, reference_queries, require_models, require_vectors
from registry.decisions.service.provenance import REFERENCE, finish, provenance_vectors, restricting
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter
from registry.services.context import Context


def fallbacks(
    ctx: Context,
    model_id: uuid.UUID,
    k: int = 5,
    flt: ModelFilter | None = None,
    *,
    same_license: bool = False,
    reference: ReferenceQueries | None = None,
    provenance: EvaluationFilter | None = None,
) -> FallbacksRead:
    """The k nearest *active* models satisfying the hard constraints in `flt`, with predicted agreement
    (`provenance`: all vectors re-embedded from evaluations of that provenance only)."""
    prov = restricting(provenance)
    if k < 1:
        raise InvalidDecisionInput(f"k must be at least 1, got {k}")
    row = require_models(ctx, [model_id])[model_id]
    base = flt or ModelFilter()
    licenses = base.licenses
    if same_license:
        if row.license is None:
            raise InvalidDecisionInput(f"model {model_id} has no license, so same_license cannot apply")
        licenses = (row.license,)
    query = replace(base, statuses=("active",), licenses=licenses, exclude_ids=(*base.exclude_ids, model_id))
    pv = None if prov is None else provenance_vectors(ctx, prov, query, must=[model_id])
    vec = require_vectors(ctx, [model_id])[model_id] if pv is None else pv.vector(model_id)
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
            FallbackRead(model=brief(rows[h.id]), distance=h.distance, predicted_agreement=a)
            for h, a in zip(hits, agree, strict=True)
        ],
    )
    return finish(read, pv, [REFERENCE])
