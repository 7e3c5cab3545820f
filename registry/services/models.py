"""Use cases on models: register, refine with more evaluations, read, list, patch, delete, similar."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from typing import Literal

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.errors import EmbeddingMissing, InvalidInput, NotFound
from registry.ports import ModelFilter, ModelPoint
from registry.schemas import (
    EvaluationFilter,
    EvaluationIn,
    EvaluationRead,
    EvaluationSourceCount,
    EvaluationSourceRead,
    ModelCreate,
    ModelProvenanceRead,
    ModelRead,
    ModelUpdate,
    Page,
    SimilarModel,
    SimilarRead,
)
from registry.services import similarity
from registry.services.common import (
    check_size,
    embed_rows,
    index_write,
    model_payload,
    question_phi,
    record_cache,
    registered_records,
    to_model_read,
    upsert_vectors,
)
from registry.services.context import Context
from registry.services.history import EmbeddingReason
from registry.services.provenance import restricting, similar_with_provenance
from registry.services.questions import resolve_evaluation_questions
from registry.services.retry import retry_on_race
from registry.tables import EvaluationSourceRow, ModelRow

log = logging.getLogger(__name__)


def _load(s: Session, model_id: uuid.UUID) -> ModelRow:
    row = repo.get_model(s, model_id)
    if row is None:
        raise NotFound(f"model {model_id} does not exist")
    return row


def store_evaluations(
    ctx: Context,
    s: Session,
    row: ModelRow,
    items: Sequence[EvaluationIn],
    *,
    new_model: bool,
    reason: EmbeddingReason | None = None,
    source_id: uuid.UUID | None = None,
) -> ModelRead:
    """Write evaluations (+ inline questions), re-embed the full set, upsert vectors; caller commits.

    `reason` is recorded in the embedding history (default: register for a new model, else
    evaluations); `source_id` links every score to that provenance record."""
    questions, new_rows = resolve_evaluation_questions(s, items)
    if new_rows:
        repo.add_questions(s, new_rows)
    triples = [(questions[e.question], e.score, e.source) for e in items]
    sources = None if source_id is None else [source_id] * len(triples)
    repo.upsert_evaluations(s, row.id, triples, new_model=new_model, source_ids=sources)
    known = {row.id: [(q, y) for q, y, _ in triples]} if new_model else None
    why: EmbeddingReason = reason or ("register" if new_model else "evaluations")
    points, new_phi = embed_rows(ctx, s, [row], known=known, reason=why)
    upsert_vectors(ctx, points, new_phi)
    return to_model_read(row, points[0].vector if points else None)


@retry_on_race
def register_model(ctx: Context, data: ModelCreate) -> ModelRead:
    """Register a model, with its evaluations and inline questions; its embedding is computed at once."""
    check_size(ctx, len(data.evaluations), "evaluations")
    with ctx.session_factory() as s, s.begin():
        row = ModelRow(
            id=uuid.uuid4(),
            name=data.name,
            provider=data.provider,
            family=data.family,
            base_model=data.base_model,
            params_b=data.params_b,
            context_window=data.context_window,
            input_price=data.input_price,
            output_price=data.output_price,
            license=data.license,
            status=data.status,
            meta=data.metadata,
        )
        repo.set_tags(row, data.tags)
        repo.add_model(s, row)  # NameTaken, also when a concurrent registration won
        if data.evaluations:
            return store_evaluations(ctx, s, row, data.evaluations, new_model=True)
        return to_model_read(row)


@retry_on_race
def add_evaluations(ctx: Context, model_id: uuid.UUID, items: Sequence[EvaluationIn]) -> ModelRead:
    """Add (or replace) scores and refine the embedding from the model's full evaluation set."""
    if not items:
        raise InvalidInput("no evaluations given")
    check_size(ctx, len(items), "evaluations")
    with ctx.session_factory() as s, s.begin():
        row = _load(s, model_id)
        return store_evaluations(ctx, s, row, items, new_model=False)


def get_model(ctx: Context, model_id: uuid.UUID, *, include_vector: bool = False) -> ModelRead:
    """One model; with `include_vector` its current embedding vector too."""
    with ctx.session_factory() as s:
        row = _load(s, model_id)
        vec = ctx.index.get_model_vectors([model_id]).get(model_id) if include_vector else None
        return to_model_read(row, vec)


def get_models(ctx: Context, model_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ModelRead]:
    """Models by id (ids that do not exist are left out)."""
    with ctx.session_factory() as s:
        return {i: to_model_read(r) for i, r in repo.get_models(s, model_ids).items()}


def list_models(
    ctx: Context, flt: ModelFilter | None = None, *, limit: int = 50, offset: int = 0
) -> Page[ModelRead]:
    """A page of models matching the filter, ordered by name."""
    with ctx.session_factory() as s:
        rows, total = repo.list_models(s, flt, limit=limit, offset=offset)
        return Page(items=[to_model_read(r) for r in rows], total=total, limit=limit, offset=offset)


@retry_on_race
def update_model(ctx: Context, model_id: uuid.UUID, patch: ModelUpdate) -> ModelRead:
    """Change metadata; the vector's payload follows at once (so filters see a new status immediately)."""
    with ctx.session_factory() as s, s.begin():
        row = _load(s, model_id)
        fields = patch.model_dump(exclude_unset=True)
        for name, value in fields.items():
            if name == "tags":
                repo.set_tags(row, value)
            elif name == "metadata":
                row.meta = value
            else:
                setattr(row, name, value)
        repo.flush_model(s, row.name)
        vec = ctx.index.get_model_vectors([model_id]).get(model_id)
        if vec is not None:
            with index_write():
                ctx.index.upsert_models([ModelPoint(id=row.id, vector=vec, payload=model_payload(row))])
        return to_model_read(row)


def delete_model(ctx: Context, model_id: uuid.UUID) -> None:
    """Delete a model and its evaluations: SQL first, then the vector (an orphan vector is harmless)."""
    with ctx.session_factory() as s, s.begin():
        repo.delete_model(s, _load(s, model_id))
    try:
        ctx.index.delete_models([model_id])
    except Exception:
        log.exception("model %s deleted from SQL but not from the index; reindex removes it", model_id)


def list_evaluations(
    ctx: Context,
    model_id: uuid.UUID,
    *,
    limit: int = 100,
    offset: int = 0,
    flt: EvaluationFilter | None = None,
) -> Page[EvaluationRead]:
    """A page of a model's evaluations (with their provenance), ordered by question key."""
    with ctx.session_factory() as s:
        _load(s, model_id)
        rows, total = repo.list_evaluations(s, model_id, limit=limit, offset=offset, flt=flt)
        items = [
            EvaluationRead(
                question=key,
                question_id=r.question_id,
                score=r.score,
                source=r.source,
                created_at=r.created_at,
                provenance=to_source_read(src) if src is not None else None,
            )
            for r, key, src in rows
        ]
        return Page(items=items, total=total, limit=limit, offset=offset)


def to_source_read(row: EvaluationSourceRow) -> EvaluationSourceRead:
    return EvaluationSourceRead.model_validate(row, from_attributes=True)


def model_provenance(ctx: Context, model_id: uuid.UUID) -> list[ModelProvenanceRead]:
    """Where a model's scores came from (its model card): per provenance, how many and their mean."""
    with ctx.session_factory() as s:
        _load(s, model_id)
        return [
            ModelProvenanceRead(
                provenance=to_source_read(src) if src is not None else None, evaluations=n, mean_score=mean
            )
            for src, n, mean in repo.model_provenance(s, model_id)
        ]


def list_evaluation_sources(
    ctx: Context, *, tool: str | None = None, task: str | None = None, limit: int = 50, offset: int = 0
) -> Page[EvaluationSourceCount]:
    """Every stored provenance record (newest first), with how many evaluations each holds."""
    with ctx.session_factory() as s:
        rows, total = repo.list_sources(s, tool=tool, task=task, limit=limit, offset=offset)
        items = [EvaluationSourceCount(source=to_source_read(r), evaluations=n) for r, n in rows]
        return Page(items=items, total=total, limit=limit, offset=offset)


def nearest_to_vector(
    ctx: Context, vector: np.ndarray, k: int, flt: ModelFilter | None = None, *, of: uuid.UUID | None = None
) -> list[SimilarModel]:
    """The k registered models nearest to an embedding, with Euclidean distances. `of`: the model whose
    embedding it is, read in the same statement (NotFound if it is not registered)."""
    n = k
    with ctx.session_factory() as s:
        read = record_cache(ctx).reader(s)
        while True:  # orphan vectors skipped: search further until k registered or the index ends
            hits = ctx.index.search_models(vector, n, flt)
            rows, chosen = registered_records(s, of, [h.id for h in hits], k, read)
            if len(chosen) >= k or len(hits) < n:
                break
            n += k - len(chosen)
    distance = {h.id: h.distance for h in hits}
    return [SimilarModel(model=to_model_read(rows[m]), distance=distance[m]) for m in chosen]


def _require_model(ctx: Context, model_id: uuid.UUID) -> None:
    with ctx.session_factory() as s:
        if not repo.model_exists(s, model_id):
            raise NotFound(f"model {model_id} does not exist")


def similar_models(
    ctx: Context,
    model_id: uuid.UUID,
    k: int = 10,
    flt: ModelFilter | None = None,
    rank_by: Literal["behaviour", "embedding"] = "behaviour",
    provenance: EvaluationFilter | None = None,
) -> SimilarRead:
    """The k models nearest to this one (itself excluded) that satisfy the filter.

    `behaviour` (default): the max(3k, 30) nearest by vector search, re-ranked by behaviour distance:
    item-response distance and the observed disagreement on shared questions
    (`registry.services.similarity`). `provenance`: on evaluations of that provenance only
    (`registry.services.provenance`).
    """
    if k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}")
    prov = restricting(provenance)
    if prov is not None:
        _require_model(ctx, model_id)
        base = flt or ModelFilter()
        flt_p = dataclasses.replace(base, exclude_ids=(*base.exclude_ids, model_id))
        return similar_with_provenance(ctx, model_id, k, flt_p, rank_by, prov)
    # Whether the model is registered is read with the answer's records (one statement fewer on the hot
    # path); a vector without a row (an orphan left by a failed delete) is NotFound there.
    vec = ctx.index.get_model_vectors([model_id]).get(model_id)
    if vec is None:
        _require_model(ctx, model_id)
        raise EmbeddingMissing(
            f"model {model_id} has no embedding under encoder {ctx.embedder.fingerprint}: "
            "add evaluations, or run `locus-registry reindex`"
        )
    base = flt or ModelFilter()
    flt2 = dataclasses.replace(base, exclude_ids=(*base.exclude_ids, model_id))
    if rank_by == "embedding":
        items = nearest_to_vector(ctx, vec, k, flt2, of=model_id)
        return SimilarRead(model_id=model_id, fingerprint=ctx.embedder.fingerprint, items=items)
    items, n_ref = similarity.nearest_by_behaviour(ctx, model_id, vec, k, flt2)
    return SimilarRead(
        model_id=model_id,
        fingerprint=ctx.embedder.fingerprint,
        items=items,
        ranked_by="behaviour",
        reference_questions=n_ref,
        prior_questions=similarity.PRIOR_QUESTIONS,
    )


def embed_evaluations(ctx: Context, items: Sequence[EvaluationIn]) -> np.ndarray:
    """Embed an unregistered evaluation set of known questions (nothing is written): (embedding_dim,)."""
    if not items:
        raise InvalidInput("no evaluations given")
    check_size(ctx, len(items), "evaluations")
    with ctx.session_factory() as s:
        questions, new_rows = resolve_evaluation_questions(s, items)
        known = {r.id for r in new_rows}
        pairs = sorted((questions[e.question], e.score) for e in items)
        phi, _ = question_phi(ctx, s, [q for q, _ in pairs if q not in known])
        if new_rows:
            vecs = ctx.embedder.encode_queries([r.text for r in new_rows])
            phi.update(zip([r.id for r in new_rows], vecs, strict=True))
    x = np.stack([phi[q] for q, _ in pairs]).astype(np.float32)  # (n, query_dim)
    y = np.asarray([sc for _, sc in pairs], dtype=np.float32)  # (n,)
    out: np.ndarray = ctx.embedder.embed([(x, y)])[0]
    return out
