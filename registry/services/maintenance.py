"""Whole-registry operations: rebuild the vector index from SQL, bulk import, readiness."""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

import numpy as np

from registry import repositories as repo
from registry.errors import InvalidInput, QuestionConflict
from registry.schemas import ImportReport, ReindexReport
from registry.services.common import Progress, embed_rows, index_write, new_question, upsert_vectors
from registry.services.context import Context
from registry.tables import ModelRow, QuestionRow

log = logging.getLogger(__name__)

MODEL_BATCH = 16
QUESTION_BATCH = 2_048


class EvalTable(Protocol):
    """A benchmark source as plain data (`encoder.data.EvalSource` has this shape)."""

    name: str
    question_ids: list[str]
    texts: list[str]
    categories: list[str]
    model_names: list[str]
    labels: np.ndarray  # (M, Q) float, NaN where a model was not evaluated


def _noop(stage: str, done: int, total: int) -> None:
    return None


def reindex(ctx: Context, *, progress: Progress | None = None) -> ReindexReport:
    """Drop the current encoder's collections and rebuild every vector from SQL."""
    report = progress or _noop
    ctx.ensure_collections()
    with ctx.session_factory() as s, s.begin():
        with index_write():
            ctx.index.reset()
        n_q = repo.count_questions(s)
        done = 0
        cache: dict[uuid.UUID, np.ndarray] = {}
        for rows in repo.iter_questions(s, QUESTION_BATCH):
            vecs = ctx.embedder.encode_queries([r.text for r in rows])  # (B, query_dim)
            with index_write():
                ctx.index.upsert_questions([r.id for r in rows], vecs)
            cache.update(zip([r.id for r in rows], vecs, strict=True))
            done += len(rows)
            report("questions", done, n_q)
        ids = repo.iter_model_ids(s)
        embedded = 0
        for start in range(0, len(ids), MODEL_BATCH):
            batch = list(repo.get_models(s, ids[start : start + MODEL_BATCH]).values())
            points, new_phi = embed_rows(ctx, s, batch, cache)
            upsert_vectors(ctx, points, new_phi)
            embedded += len(points)
            report("models", min(start + MODEL_BATCH, len(ids)), len(ids))
        return ReindexReport(
            fingerprint=ctx.embedder.fingerprint,
            questions=n_q,
            models=embedded,
            models_without_evaluations=len(ids) - embedded,
        )


def import_source(
    ctx: Context,
    source: EvalTable,
    *,
    limit_models: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Bulk-load a benchmark: questions keyed `<source>:<question_id>` (ids already prefixed with the
    source name are kept), models by name, their scores.

    A model already registered under the same name gains these evaluations (re-importing replaces
    the scores). Each new question text is encoded once. One transaction: all or nothing.
    """
    report = progress or _noop
    labels = np.asarray(source.labels, dtype=np.float32)  # (M, Q)
    n_models, n_q = labels.shape
    if n_q != len(source.question_ids) or n_models != len(source.model_names):
        raise InvalidInput(
            f"source {source.name!r}: labels {labels.shape} do not match "
            f"{len(source.model_names)} models x {len(source.question_ids)} questions"
        )
    finite = labels[~np.isnan(labels)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InvalidInput(f"source {source.name!r}: scores must lie in [0, 1]")
    m_take = n_models if limit_models is None else max(0, min(limit_models, n_models))
    keys = [
        q if q.startswith((f"{source.name}/", f"{source.name}:")) else f"{source.name}:{q}"
        for q in source.question_ids
    ]
    ctx.ensure_collections()
    with ctx.session_factory() as s, s.begin():
        existing = repo.get_questions_by_keys(s, keys)
        new_rows: list[QuestionRow] = []
        q_rows: list[QuestionRow] = []
        for key, text, cat in zip(keys, source.texts, source.categories, strict=True):
            row = existing.get(key)
            if row is None:
                row = new_question(key, text, cat or None, source.name)
                new_rows.append(row)
            elif row.text != text:
                raise QuestionConflict(f"question key {key!r} is already registered with a different text")
            q_rows.append(row)
        repo.add_questions(s, new_rows)
        cache: dict[uuid.UUID, np.ndarray] = {}
        for start in range(0, len(new_rows), QUESTION_BATCH):
            part = new_rows[start : start + QUESTION_BATCH]
            vecs = ctx.embedder.encode_queries([r.text for r in part])  # (B, query_dim)
            cache.update(zip([r.id for r in part], vecs, strict=True))
            report("questions", start + len(part), len(new_rows))
        with index_write():
            for start in range(0, len(new_rows), QUESTION_BATCH):
                part = new_rows[start : start + QUESTION_BATCH]
                ctx.index.upsert_questions([r.id for r in part], np.stack([cache[r.id] for r in part]))

        names = source.model_names[:m_take]
        models = repo.get_models_by_names(s, names)
        created = 0
        n_evals = 0
        rows: list[ModelRow] = []
        for i, name in enumerate(names):
            model = models.get(name)
            is_new = model is None
            if model is None:
                model = repo.add_model(s, ModelRow(id=uuid.uuid4(), name=name, status="active", meta={}))
                created += 1
            observed = np.flatnonzero(~np.isnan(labels[i]))
            items = [(q_rows[j].id, float(labels[i, j]), source.name) for j in observed]
            repo.upsert_evaluations(s, model.id, items, new_model=is_new)
            n_evals += len(items)
            rows.append(model)
            report("evaluations", i + 1, len(names))
        for start in range(0, len(rows), MODEL_BATCH):
            points, new_phi = embed_rows(ctx, s, rows[start : start + MODEL_BATCH], cache)
            upsert_vectors(ctx, points, new_phi)
            report("embeddings", min(start + MODEL_BATCH, len(rows)), len(rows))
        return ImportReport(
            source=source.name,
            questions_created=len(new_rows),
            questions_existing=len(keys) - len(new_rows),
            models_created=created,
            models_updated=len(rows) - created,
            evaluations=n_evals,
        )


def readiness(ctx: Context) -> dict[str, bool]:
    """Whether the database answers, the index answers, and the encoder is loaded."""
    checks = {"database": False, "index": ctx.index.healthy(), "encoder": ctx.embedder.embedding_dim > 0}
    try:
        with ctx.session_factory() as s:
            repo.count_models(s)
        checks["database"] = True
    except Exception:
        log.exception("database check failed")
    return checks


def stale_models(ctx: Context) -> int:
    """Models with evaluations but no vector from the loaded encoder (a reindex is due when > 0)."""
    with ctx.session_factory() as s:
        return repo.count_stale_embeddings(s, ctx.embedder.fingerprint)
