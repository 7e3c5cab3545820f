"""Use cases on provenance: a model embedded from only the scores of a given provenance.

A decision that must rest on comparable evaluations (say, only lm-eval 0-shot runs of one task
version) asks for the model's embedding from those scores; nothing is written.
"""

from __future__ import annotations

import uuid

import numpy as np

from registry import repositories as repo
from registry.errors import InvalidInput, NotFound
from registry.schemas import EvaluationFilter, ProvenanceEmbeddingRead
from registry.services.common import question_phi
from registry.services.context import Context


def embed_model_with_provenance(
    ctx: Context, model_id: uuid.UUID, flt: EvaluationFilter
) -> ProvenanceEmbeddingRead:
    """The model's embedding from only its scores that match `flt` (same canonical order as stored
    vectors, so with a filter that keeps every score it equals the model's vector)."""
    with ctx.session_factory() as s:
        if not repo.model_exists(s, model_id):
            raise NotFound(f"model {model_id} does not exist")
        pairs = repo.model_scores(s, [model_id], flt).get(model_id, [])
        if not pairs:
            raise InvalidInput(f"model {model_id} has no evaluations of this provenance")
        phi, _ = question_phi(ctx, s, [q for q, _ in pairs])
    x = np.stack([phi[q] for q, _ in pairs]).astype(np.float32)  # (n, query_dim)
    y = np.asarray([sc for _, sc in pairs], dtype=np.float32)  # (n,)
    vec = ctx.embedder.embed([(x, y)])[0]
    return ProvenanceEmbeddingRead(
        model_id=model_id,
        fingerprint=ctx.embedder.fingerprint,
        n_evaluations=len(pairs),
        vector=[float(v) for v in vec],
    )
