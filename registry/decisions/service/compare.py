"""Compare use case: distance, verdict, predicted agreement and per-category accuracy of two models."""

from __future__ import annotations

import uuid

import numpy as np

from registry import repositories as repo
from registry.decisions.compare import compare_models
from registry.decisions.schemas import CategoryRead, CompareRead, ReferenceQueries
from registry.decisions.service.pool import brief, reference_queries, require_models, require_vectors
from registry.decisions.service.provenance import (
    REFERENCE,
    THRESHOLDS,
    finish,
    provenance_vectors,
    restricting,
)
from registry.decisions.service.thresholds import ThresholdProvider
from registry.schemas import EvaluationFilter
from registry.services.context import Context


def compare(
    ctx: Context,
    a: uuid.UUID,
    b: uuid.UUID,
    thresholds: ThresholdProvider | None = None,
    reference: ReferenceQueries | None = None,
    provenance: EvaluationFilter | None = None,
) -> CompareRead:
    """Distance, verdict, predicted agreement and per-category predicted accuracy of two models, and
    their disagreement on the questions both were scored on (`provenance`: evaluations of that
    provenance only, both models re-embedded from them)."""
    prov = restricting(provenance)
    rows = require_models(ctx, [a, b])
    pv = None if prov is None else provenance_vectors(ctx, prov, must=[a, b], pool=False)
    vecs = require_vectors(ctx, [a, b]) if pv is None else pv.as_dict()
    with ctx.session_factory() as s:
        scores = repo.model_scores(s, [a, b], prov)
    sa, sb = dict(scores.get(a, [])), dict(scores.get(b, []))
    shared = sorted(sa.keys() & sb.keys())
    phi, cats = reference_queries(ctx, reference)
    if len(phi):
        p = ctx.embedder.predict(np.stack([vecs[a], vecs[b]]).astype(np.float32), phi)  # (Q, 2)
        pa, pb = p[:, 0], p[:, 1]
    else:
        pa = pb = np.zeros(0)
    c = compare_models(vecs[a], vecs[b], pa, pb, cats)
    got = thresholds.get(ctx) if thresholds is not None else None
    read = CompareRead(
        a=brief(rows[a]),
        b=brief(rows[b]),
        fingerprint=ctx.embedder.fingerprint,
        distance=c.distance,
        verdict=None if got is None else got[0].verdict(c.distance),
        reference_queries=len(phi),
        predicted_agreement=c.predicted_agreement,
        predicted_accuracy_a=c.accuracy_a,
        predicted_accuracy_b=c.accuracy_b,
        categories=[
            CategoryRead(
                category=r.category, queries=r.n_queries, predicted_accuracy_a=r.a, predicted_accuracy_b=r.b
            )
            for r in c.categories
        ],
        shared_questions=len(shared),
        observed_disagreement=float(np.mean([abs(sa[q] - sb[q]) for q in shared])) if shared else None,
    )
    return finish(read, pv, [THRESHOLDS, REFERENCE])
