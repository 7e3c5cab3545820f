"""Whole-registry operations: rebuild the vector index from SQL, bulk import (every format), readiness."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session

from registry import importers
from registry import repositories as repo
from registry.errors import InvalidInput, QuestionConflict
from registry.importers import ImportBatch, Provenance, QuestionSpec
from registry.schemas import ImportReport, ReindexReport
from registry.services.common import Progress, embed_rows, index_write, new_question, upsert_vectors
from registry.services.context import Context
from registry.tables import EvaluationSourceRow, ModelRow, QuestionRow, utcnow

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


def resolve_questions(
    s: Session, specs: Sequence[QuestionSpec]
) -> tuple[list[QuestionRow], list[QuestionRow]]:
    """Each spec's question row, in order: the registered one, or a new row (added to the session).
    Returns (rows, new rows). Another text under a registered key is a QuestionConflict, unless the
    question is keyed by its text and the two normalise alike."""
    existing = repo.get_questions_by_keys(s, [q.key for q in specs])
    rows: list[QuestionRow] = []
    new_rows: list[QuestionRow] = []
    for spec in specs:
        row = existing.get(spec.key)
        if row is None:
            row = new_question(spec.key, spec.text, spec.category, spec.benchmark)
            new_rows.append(row)
        elif row.text != spec.text and not (
            spec.text_keyed and importers.normalise_text(row.text) == importers.normalise_text(spec.text)
        ):
            raise QuestionConflict(f"question key {spec.key!r} is already registered with a different text")
        rows.append(row)
    repo.add_questions(s, new_rows)
    return rows, new_rows


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
            points, new_phi = embed_rows(ctx, s, batch, cache, reason="reindex")
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
    provenance: Provenance | None = None,
) -> ImportReport:
    """Bulk-load a benchmark table: questions keyed `<source>:<question_id>` (ids already prefixed with
    the source name are kept), models by name, their scores.

    A model already registered under the same name gains these evaluations (re-importing replaces
    the scores). `provenance` says where the table came from (default: a record whose hash is over the
    table's content). Each new question text is encoded once. One transaction: all or nothing.
    """
    labels = np.asarray(source.labels, dtype=np.float32)  # (M, Q)
    if provenance is None:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(labels).tobytes())
        for part in (source.question_ids, source.model_names, source.texts):
            digest.update("\0".join(part).encode())
        provenance = Provenance(tool="table", task=source.name, file_sha256=digest.hexdigest())
    try:
        batch = importers.from_table(
            source.name,
            source.question_ids,
            source.texts,
            source.categories,
            source.model_names,
            labels,
            provenance,
        )
    except importers.ImportFormatError as exc:
        raise InvalidInput(str(exc)) from None
    return import_batch(ctx, batch, limit_models=limit_models, progress=progress)


def import_batch(
    ctx: Context,
    batch: ImportBatch,
    *,
    limit_models: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Write what an importer read: questions, provenance records, models, scores, then embeddings.

    Questions are matched by key (a stored key with another text is a QuestionConflict); provenance
    by fingerprint, so importing the same file again stores nothing new and leaves the same scores
    (idempotent). A model already registered under the same name gains the scores. One transaction.
    """
    report = progress or _noop
    n = batch.n_evaluations
    for arr, what in (
        (batch.model_idx, "model"),
        (batch.question_idx, "question"),
        (batch.source_idx, "source"),
    ):
        if arr.shape != (n,):
            raise InvalidInput(f"import {batch.name!r}: {what} index has shape {arr.shape}, expected ({n},)")
    if n and (float(batch.scores.min()) < 0 or float(batch.scores.max()) > 1 or np.isnan(batch.scores).any()):
        raise InvalidInput(f"import {batch.name!r}: scores must lie in [0, 1]")
    m_take = len(batch.models) if limit_models is None else max(0, min(limit_models, len(batch.models)))
    keys = [q.key for q in batch.questions]
    ctx.ensure_collections()
    with ctx.session_factory() as s, s.begin():
        q_rows, new_rows = resolve_questions(s, batch.questions)
        q_ids = [r.id for r in q_rows]
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

        fingerprints = [p.fingerprint() for p in batch.provenances]
        stored = repo.get_sources_by_fingerprints(s, fingerprints)
        new_sources = [
            _source_row(p, fp)
            for p, fp in zip(batch.provenances, fingerprints, strict=True)
            if fp not in stored
        ]
        repo.add_sources(s, new_sources)
        stored.update({r.fingerprint: r for r in new_sources})
        source_ids = [stored[fp].id for fp in fingerprints]

        names = batch.models[:m_take]
        models = repo.get_models_by_names(s, names)
        order = np.argsort(batch.model_idx, kind="stable")  # evaluations grouped by model
        bounds = np.searchsorted(batch.model_idx[order], np.arange(len(batch.models) + 1))
        created = 0
        n_evals = 0
        rows: list[ModelRow] = []
        for i, name in enumerate(names):
            model = models.get(name)
            is_new = model is None
            if model is None:
                model = repo.add_model(s, ModelRow(id=uuid.uuid4(), name=name, status="active", meta={}))
                created += 1
            sel = order[bounds[i] : bounds[i + 1]]
            q_sel = batch.question_idx[sel].tolist()
            items = [
                (q_ids[j], y, batch.name) for j, y in zip(q_sel, batch.scores[sel].tolist(), strict=True)
            ]
            src = [source_ids[k] for k in batch.source_idx[sel].tolist()]
            repo.upsert_evaluations(s, model.id, items, new_model=is_new, source_ids=src)
            n_evals += len(items)
            rows.append(model)
            report("evaluations", i + 1, len(names))
        for start in range(0, len(rows), MODEL_BATCH):
            points, new_phi = embed_rows(ctx, s, rows[start : start + MODEL_BATCH], cache, reason="import")
            upsert_vectors(ctx, points, new_phi)
            report("embeddings", min(start + MODEL_BATCH, len(rows)), len(rows))
        return ImportReport(
            source=batch.name,
            questions_created=len(new_rows),
            questions_existing=len(keys) - len(new_rows),
            models_created=created,
            models_updated=len(rows) - created,
            evaluations=n_evals,
            sources_created=len(new_sources),
            sources_existing=len(fingerprints) - len(new_sources),
        )


def _source_row(p: Provenance, fingerprint: str) -> EvaluationSourceRow:
    return EvaluationSourceRow(
        id=uuid.uuid4(),
        fingerprint=fingerprint,
        tool=p.tool[:50],
        tool_version=None if p.tool_version is None else str(p.tool_version)[:100],
        task=None if p.task is None else p.task[:200],
        task_version=None if p.task_version is None else str(p.task_version)[:100],
        n_shot=p.n_shot,
        generation=json.loads(json.dumps(dict(p.generation), default=str)),  # JSON-safe copy
        run_at=p.run_at,
        file_name=None if p.file_name is None else p.file_name[-500:],
        file_sha256=p.file_sha256,
        created_at=utcnow(),
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
