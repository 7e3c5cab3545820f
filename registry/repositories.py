"""Data access: the only module that builds SQL. Functions add, flush and query; they never commit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.errors import NameTaken
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter
from registry.tables import (
    ApiKeyRow,
    EmbeddingStateRow,
    EvaluationRow,
    EvaluationSourceRow,
    ModelRow,
    ModelTagRow,
    QuestionRow,
    RegistryStateRow,
    utcnow,
)

# Both SQLite (32,766) and PostgreSQL (65,535) cap bound parameters per statement.
CHUNK = 5_000

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- models


def get_model(s: Session, model_id: uuid.UUID) -> ModelRow | None:
    return s.get(ModelRow, model_id)


def model_exists(s: Session, model_id: uuid.UUID) -> bool:
    return s.scalar(select(ModelRow.id).where(ModelRow.id == model_id)) is not None


def get_model_by_name(s: Session, name: str) -> ModelRow | None:
    return s.scalars(select(ModelRow).where(ModelRow.name == name)).one_or_none()


def get_models(s: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ModelRow]:
    out: dict[uuid.UUID, ModelRow] = {}
    for part in chunks(list(ids)):
        for row in s.scalars(select(ModelRow).where(ModelRow.id.in_(part))):
            out[row.id] = row
    return out


def get_models_by_names(s: Session, names: Sequence[str]) -> dict[str, ModelRow]:
    out: dict[str, ModelRow] = {}
    for part in chunks(list(names)):
        for row in s.scalars(select(ModelRow).where(ModelRow.name.in_(part))):
            out[row.name] = row
    return out


def add_model(s: Session, row: ModelRow) -> ModelRow:
    """Insert and flush; a taken name (also one taken by a concurrent transaction) raises NameTaken."""
    s.add(row)
    flush_model(s, row.name)
    return row


def flush_model(s: Session, name: str) -> None:
    """Flush pending model changes, turning a unique-name violation into NameTaken."""
    try:
        s.flush()
    except IntegrityError as exc:
        if "name" in str(exc.orig).lower():
            raise NameTaken(name) from exc
        raise


def set_tags(row: ModelRow, tags: Iterable[str]) -> None:
    wanted = sorted(set(tags))
    row.tag_rows = [t for t in row.tag_rows if t.tag in wanted]
    have = {t.tag for t in row.tag_rows}
    row.tag_rows.extend(ModelTagRow(model_id=row.id, tag=t) for t in wanted if t not in have)


def _model_conditions(flt: ModelFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    for column, values in (
        (ModelRow.status, flt.statuses),
        (ModelRow.provider, flt.providers),
        (ModelRow.family, flt.families),
        (ModelRow.license, flt.licenses),
    ):
        if values:
            conds.append(column.in_(values))
    for tag in flt.tags:
        conds.append(exists().where(ModelTagRow.model_id == ModelRow.id, ModelTagRow.tag == tag))
    if flt.min_params is not None:
        conds.append(ModelRow.params_b >= flt.min_params)
    if flt.max_params is not None:
        conds.append(ModelRow.params_b <= flt.max_params)
    if flt.min_context_window is not None:
        conds.append(ModelRow.context_window >= flt.min_context_window)
    if flt.max_input_price is not None:
        conds.append(ModelRow.input_price <= flt.max_input_price)
    if flt.max_output_price is not None:
        conds.append(ModelRow.output_price <= flt.max_output_price)
    if flt.exclude_ids:
        conds.append(ModelRow.id.not_in(flt.exclude_ids))
    if flt.include_ids:
        conds.append(ModelRow.id.in_(flt.include_ids))
    return conds


def list_models(
    s: Session, flt: ModelFilter | None = None, *, limit: int = 50, offset: int = 0
) -> tuple[list[ModelRow], int]:
    """A page of models matching the filter, ordered by name, and the total count."""
    conds = _model_conditions(flt or ModelFilter())
    total = s.scalar(select(func.count()).select_from(ModelRow).where(*conds)) or 0
    rows = s.scalars(select(ModelRow).where(*conds).order_by(ModelRow.name).limit(limit).offset(offset))
    return list(rows), total


def iter_model_ids(s: Session) -> list[uuid.UUID]:
    return list(s.scalars(select(ModelRow.id).order_by(ModelRow.id)))


def count_models(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(ModelRow)) or 0


def registry_version(s: Session) -> tuple[object, ...]:
    """Changes on every write that changes scores (a model's evaluations, embedding, existence). Caches of
    data-derived results key on it, so every process sees the same state. One read by primary key
    (`registry_state`, bumped in each writing transaction)."""
    return versions(s)[0]


def metadata_version(s: Session) -> tuple[object, ...]:
    """`registry_version` plus any change of a model's columns or tags: caches that hold model metadata
    (status, prices, parameters) key on it."""
    return versions(s)[1]


def versions(s: Session) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """(`registry_version`, `metadata_version`) in one read: for a request that keys two caches."""
    state = change_counters(s)
    if state is None:
        n, total, last, latest = _aggregate_version(s)
        return (n, total, last), (n, total, last, latest)
    return (state[0],), (state[1],)


def change_counters(s: Session) -> tuple[int, int, int] | None:
    """(scores, metadata, questions): every change a read of the registry can depend on, in one read by
    primary key; None where the counters row is missing (a schema older than migration 0005 cannot be
    served, but a hand-deleted row must not freeze every cache: no cache may key on it then)."""
    row = s.execute(_STATE).one_or_none()  # plain text: a third of the ORM select's cost, read per request
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


_STATE = text(f"SELECT scores, metadata, questions FROM {RegistryStateRow.__tablename__} WHERE id = 1")


def _aggregate_version(s: Session) -> tuple[int, int, str, str]:
    """The state the counters stand for, aggregated from the tables: what a cache keys on without them."""
    models = select(func.count(ModelRow.id)).scalar_subquery()
    latest_model = select(func.max(ModelRow.updated_at)).scalar_subquery()
    n_models, n, total, last, latest = s.execute(
        select(
            models,
            func.count(EmbeddingStateRow.model_id),
            func.coalesce(func.sum(EmbeddingStateRow.n_evaluations), 0),
            func.max(EmbeddingStateRow.updated_at),
            latest_model,
        )
    ).one()
    return int(n_models) * 1_000_003 + int(n), int(total), str(last), str(latest)


def question_version(s: Session) -> tuple[object, ...]:
    """Changes with every new question (questions are immutable otherwise)."""
    state = change_counters(s)
    if state is None:
        n, last = s.execute(select(func.count(QuestionRow.id), func.max(QuestionRow.created_at))).one()
        return int(n), str(last)
    return (state[2],)


def _with_n_evaluations(s: Session, *columns: Any, ids: Sequence[uuid.UUID] | None = None) -> list[Any]:
    """Rows of these model columns for every model (or these ids), plus its n_evaluations (None: no
    embedding state), without ORM objects."""
    stmt = select(*columns, EmbeddingStateRow.n_evaluations).outerjoin(
        EmbeddingStateRow, EmbeddingStateRow.model_id == ModelRow.id
    )
    if ids is None:
        return list(s.execute(stmt))
    return [r for part in chunks(list(ids)) for r in s.execute(stmt.where(ModelRow.id.in_(part)))]


def model_summaries(s: Session, ids: Sequence[uuid.UUID] | None = None) -> list[Any]:
    """Every model's (or these ids') decision metadata: rows of (id, name, status, provider, params_b,
    input_price, output_price, license, n_evaluations)."""
    m = ModelRow
    return _with_n_evaluations(
        s, m.id, m.name, m.status, m.provider, m.params_b, m.input_price, m.output_price, m.license, ids=ids
    )


def model_map_rows(s: Session) -> list[Any]:
    """Every model's columns the atlas shows: rows of (id, name, provider, family, params_b,
    context_window, input_price, output_price, license, status, n_evaluations)."""
    m = ModelRow
    return _with_n_evaluations(
        s,
        *(m.id, m.name, m.provider, m.family, m.params_b, m.context_window),
        *(m.input_price, m.output_price, m.license, m.status),
    )


@dataclass(frozen=True, slots=True)
class EmbeddingRecord:
    fingerprint: str
    n_evaluations: int
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A model's columns, tags and embedding state read with plain SQL (no ORM object): what
    `services.common.to_model_read` needs, for the hot read paths."""

    id: uuid.UUID
    name: str
    provider: str | None
    family: str | None
    base_model: str | None
    params_b: float | None
    context_window: int | None
    input_price: float | None
    output_price: float | None
    license: str | None
    status: str
    meta: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    tags: list[str]
    embedding: EmbeddingRecord | None


_RECORD_COLUMNS = (
    *("id", "name", "provider", "family", "base_model", "params_b", "context_window", "input_price"),
    *("output_price", "license", "status", "meta", "created_at", "updated_at"),
)


def model_records(s: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ModelRecord]:
    """`ModelRecord`s of these ids that are registered models: two statements per chunk (columns with
    embedding state, then tags), the same values an ORM load gives."""
    e = EmbeddingStateRow
    n = len(_RECORD_COLUMNS)
    out: dict[uuid.UUID, ModelRecord] = {}
    for part in chunks(list(ids)):
        tags: dict[uuid.UUID, list[str]] = defaultdict(list)
        stmt = select(ModelTagRow.model_id, ModelTagRow.tag).where(ModelTagRow.model_id.in_(part))
        for mid, tag in s.execute(stmt.order_by(ModelTagRow.tag)):
            tags[mid].append(tag)
        columns = [getattr(ModelRow, c) for c in _RECORD_COLUMNS]
        stmt2 = (
            select(*columns, e.fingerprint, e.n_evaluations, e.updated_at)
            .outerjoin(e, e.model_id == ModelRow.id)
            .where(ModelRow.id.in_(part))
        )
        for r in s.execute(stmt2):
            record: dict[str, Any] = dict(zip(_RECORD_COLUMNS, r[:n], strict=True))
            record["meta"] = dict(record["meta"] or {})
            emb = None if r[n + 1] is None else EmbeddingRecord(r[n], r[n + 1], r[n + 2])
            out[r[0]] = ModelRecord(**record, tags=tags.get(r[0], []), embedding=emb)
    return out


def existing_model_ids(s: Session, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these ids are registered models (one query per chunk, ids only)."""
    out: set[uuid.UUID] = set()
    for part in chunks(list(ids)):
        out.update(s.scalars(select(ModelRow.id).where(ModelRow.id.in_(part))))
    return out


def model_ids_where(s: Session, flt: ModelFilter) -> set[uuid.UUID]:
    """The ids of the models matching the filter (the same conditions as `list_models`)."""
    return set(s.scalars(select(ModelRow.id).where(*_model_conditions(flt))))


def delete_model(s: Session, row: ModelRow) -> None:
    s.delete(row)
    s.flush()


# ---------------------------------------------------------------- questions


def get_questions_by_keys(s: Session, keys: Sequence[str]) -> dict[str, QuestionRow]:
    out: dict[str, QuestionRow] = {}
    for part in chunks(list(keys)):
        for row in s.scalars(select(QuestionRow).where(QuestionRow.key.in_(part))):
            out[row.key] = row
    return out


def question_ids_by_keys(s: Session, keys: Sequence[str]) -> dict[str, uuid.UUID]:
    """key -> id for the registered keys among these (no ORM objects: registration reads thousands)."""
    out: dict[str, uuid.UUID] = {}
    for part in chunks(list(keys)):
        for key, qid in s.execute(select(QuestionRow.key, QuestionRow.id).where(QuestionRow.key.in_(part))):
            out[key] = qid
    return out


def get_questions(s: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, QuestionRow]:
    out: dict[uuid.UUID, QuestionRow] = {}
    for part in chunks(list(ids)):
        for row in s.scalars(select(QuestionRow).where(QuestionRow.id.in_(part))):
            out[row.id] = row
    return out


def add_questions(s: Session, rows: Sequence[QuestionRow]) -> None:
    """Insert new questions in bulk (a Core executemany: imports add tens of thousands at once).

    The rows must carry their id and created_at; they stay detached from the session.
    """
    values = [
        {
            "id": r.id,
            "key": r.key,
            "text": r.text,
            "category": r.category,
            "benchmark": r.benchmark,
            "created_at": r.created_at,
        }
        for r in rows
    ]
    for batch in chunks(values):
        s.execute(insert(QuestionRow), list(batch))


def _question_query(benchmark: str | None, category: str | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if benchmark is not None:
        conds.append(QuestionRow.benchmark == benchmark)
    if category is not None:
        conds.append(QuestionRow.category == category)
    return conds


def list_questions(
    s: Session,
    *,
    benchmark: str | None = None,
    category: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[QuestionRow], int]:
    conds = _question_query(benchmark, category)
    total = s.scalar(select(func.count()).select_from(QuestionRow).where(*conds)) or 0
    rows = s.scalars(select(QuestionRow).where(*conds).order_by(QuestionRow.key).limit(limit).offset(offset))
    return list(rows), total


def iter_questions(s: Session, batch: int = 2_000) -> Iterator[list[QuestionRow]]:
    """All questions in id order, in batches (keyset pagination, constant memory)."""
    last: uuid.UUID | None = None
    while True:
        stmt: Select[QuestionRow] = select(QuestionRow).order_by(QuestionRow.id).limit(batch)
        if last is not None:
            stmt = stmt.where(QuestionRow.id > last)
        rows = list(s.scalars(stmt))
        if not rows:
            return
        yield rows
        last = rows[-1].id


def count_questions(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(QuestionRow)) or 0


# ---------------------------------------------------------------- evaluations


def upsert_evaluations(
    s: Session,
    model_id: uuid.UUID,
    items: Sequence[tuple[uuid.UUID, float, str | None]],
    *,
    new_model: bool = False,
    source_ids: Sequence[uuid.UUID | None] | None = None,
) -> None:
    """Store (question_id, score, source) for a model; an existing pair's score is replaced.

    `source_ids` (parallel to `items`) links each score to its provenance record.
    """
    if not new_model:
        # Delete-then-insert is the portable upsert (no dialect-specific ON CONFLICT).
        for part in chunks([q for q, _, _ in items]):
            s.execute(
                delete(EvaluationRow).where(
                    EvaluationRow.model_id == model_id, EvaluationRow.question_id.in_(part)
                )
            )
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"model_id": model_id, "question_id": q, "score": float(y), "source": src, "created_at": now}
        for q, y, src in items
    ]
    if source_ids is not None:
        for row, sid in zip(rows, source_ids, strict=True):
            row["source_id"] = sid
    else:
        for row in rows:
            row["source_id"] = None
    for batch in chunks(rows):
        s.execute(insert(EvaluationRow), list(batch))
    s.flush()


_UUIDS: dict[str, uuid.UUID] = {}  # ids as the database spells them -> one UUID object each
_UUIDS_MAX = 1_000_000


def _uuid_of(raw: str) -> uuid.UUID:
    """The UUID of an id read as text, built once per process: a model's scores name thousands of
    question ids that recur in every read, and building a UUID from text costs more than the read."""
    got = _UUIDS.get(raw)
    if got is None:
        if len(_UUIDS) >= _UUIDS_MAX:
            _UUIDS.clear()
        got = _UUIDS[raw] = uuid.UUID(raw)
    return got


def model_scores(
    s: Session, model_ids: Sequence[uuid.UUID], flt: EvaluationFilter | None = None
) -> dict[uuid.UUID, list[tuple[uuid.UUID, float]]]:
    """Per model its (question_id, score) pairs sorted by question id: the canonical set order.

    With `flt`, only the scores of that provenance. Ids are read as text (`_uuid_of`).
    """
    out: dict[uuid.UUID, list[tuple[uuid.UUID, float]]] = defaultdict(list)
    conds = _evaluation_conditions(flt)
    for part in chunks(list(model_ids), 500):
        stmt = select(
            cast(EvaluationRow.model_id, String), cast(EvaluationRow.question_id, String), EvaluationRow.score
        ).where(EvaluationRow.model_id.in_(part), *conds)
        if conds:
            stmt = stmt.outerjoin(EvaluationSourceRow, EvaluationSourceRow.id == EvaluationRow.source_id)
        for mid, qid, score in s.execute(stmt):
            out[_uuid_of(mid)].append((_uuid_of(qid), score))
    for pairs in out.values():
        pairs.sort(key=lambda p: p[0])
    return dict(out)


def model_scores_on(
    s: Session,
    model_ids: Sequence[uuid.UUID],
    question_ids: Sequence[uuid.UUID],
    flt: EvaluationFilter | None = None,
) -> dict[uuid.UUID, dict[uuid.UUID, float]]:
    """Per model its scores on these questions only (question_id -> score): one bounded query.

    With `flt`, only the scores of that provenance."""
    out: dict[uuid.UUID, dict[uuid.UUID, float]] = defaultdict(dict)
    if not model_ids or not question_ids:
        return {}
    conds = _evaluation_conditions(flt)
    for part in chunks(list(question_ids), 1000):
        stmt = select(EvaluationRow.model_id, EvaluationRow.question_id, EvaluationRow.score).where(
            EvaluationRow.model_id.in_(list(model_ids)), EvaluationRow.question_id.in_(part), *conds
        )
        if conds:
            stmt = stmt.outerjoin(EvaluationSourceRow, EvaluationSourceRow.id == EvaluationRow.source_id)
        for mid, qid, score in s.execute(stmt):
            out[mid][qid] = score
    return dict(out)


def embedding_states(s: Session) -> dict[uuid.UUID, tuple[str, int, str]]:
    """Every embedded model's (fingerprint, n_evaluations, updated_at as text): a model's scores change
    only together with this state (every write that changes scores re-embeds), so caches of per-model
    data keep what it has not changed."""
    e = EmbeddingStateRow
    stmt = select(cast(e.model_id, String), e.fingerprint, e.n_evaluations, cast(e.updated_at, String))
    return {_uuid_of(m): (fp, int(n), at) for m, fp, n, at in s.execute(stmt)}


def question_score_totals(
    s: Session, question_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[float, int, str | None, str | None]]:
    """Per question: the sum and the number of every model's scores on it, its benchmark and category
    (what an item-response profile reads; see `registry.services.response`)."""
    out: dict[uuid.UUID, tuple[float, int, str | None, str | None]] = {}
    for part in chunks(list(question_ids), 1000):
        stmt = (
            select(
                QuestionRow.id,
                func.coalesce(func.sum(EvaluationRow.score), 0.0),
                func.count(EvaluationRow.score),
                QuestionRow.benchmark,
                QuestionRow.category,
            )
            .outerjoin(EvaluationRow, EvaluationRow.question_id == QuestionRow.id)
            .where(QuestionRow.id.in_(part))
            .group_by(QuestionRow.id, QuestionRow.benchmark, QuestionRow.category)
        )
        for qid, total, n, benchmark, category in s.execute(stmt):
            out[qid] = (float(total), int(n), benchmark, category)
    return out


def models_with_evaluations(
    s: Session, flt: EvaluationFilter, model_flt: ModelFilter | None = None
) -> tuple[dict[uuid.UUID, int], int]:
    """Models matching `model_flt` that hold evaluations of this provenance, with how many each holds,
    and how many models match `model_flt` without holding any."""
    mconds = _model_conditions(model_flt or ModelFilter())
    stmt = (
        select(EvaluationRow.model_id, func.count())
        .outerjoin(EvaluationSourceRow, EvaluationSourceRow.id == EvaluationRow.source_id)
        .join(ModelRow, ModelRow.id == EvaluationRow.model_id)
        .where(*_evaluation_conditions(flt), *mconds)
        .group_by(EvaluationRow.model_id)
    )
    counts = {mid: int(n) for mid, n in s.execute(stmt)}
    total = s.scalar(select(func.count()).select_from(ModelRow).where(*mconds)) or 0
    return counts, total - len(counts)


def _evaluation_conditions(flt: EvaluationFilter | None) -> list[ColumnElement[bool]]:
    """Conditions on evaluations (outer-joined to their provenance) for a provenance filter."""
    if flt is None:
        return []
    conds: list[ColumnElement[bool]] = []
    if flt.tools:
        conds.append(EvaluationSourceRow.tool.in_(flt.tools))
    if flt.tasks:
        conds.append(EvaluationSourceRow.task.in_(flt.tasks))
    if flt.source_ids:
        conds.append(EvaluationRow.source_id.in_(flt.source_ids))
    if flt.min_run_at is not None:
        conds.append(EvaluationSourceRow.run_at >= flt.min_run_at)
    if flt.max_run_at is not None:
        conds.append(EvaluationSourceRow.run_at <= flt.max_run_at)
    if flt.with_provenance is True:
        conds.append(EvaluationRow.source_id.is_not(None))
    elif flt.with_provenance is False:
        conds.append(EvaluationRow.source_id.is_(None))
    return conds


def list_evaluations(
    s: Session,
    model_id: uuid.UUID,
    *,
    limit: int = 50,
    offset: int = 0,
    flt: EvaluationFilter | None = None,
) -> tuple[list[tuple[EvaluationRow, str, EvaluationSourceRow | None]], int]:
    """A page of a model's evaluations with their question keys and provenance, ordered by key."""
    conds = [EvaluationRow.model_id == model_id, *_evaluation_conditions(flt)]
    joined = EvaluationRow.__table__.outerjoin(
        EvaluationSourceRow.__table__, EvaluationSourceRow.id == EvaluationRow.source_id
    )
    total = s.scalar(select(func.count()).select_from(joined).where(*conds))
    stmt = (
        select(EvaluationRow, QuestionRow.key, EvaluationSourceRow)
        .join(QuestionRow, QuestionRow.id == EvaluationRow.question_id)
        .outerjoin(EvaluationSourceRow, EvaluationSourceRow.id == EvaluationRow.source_id)
        .where(*conds)
        .order_by(QuestionRow.key)
        .limit(limit)
        .offset(offset)
    )
    return [(row, key, src) for row, key, src in s.execute(stmt).tuples()], total or 0


def model_provenance(s: Session, model_id: uuid.UUID) -> list[tuple[EvaluationSourceRow | None, int, float]]:
    """Per provenance of a model's scores: (provenance or None, number of scores, mean score)."""
    stmt = (
        select(EvaluationRow.source_id, func.count(), func.avg(EvaluationRow.score))
        .where(EvaluationRow.model_id == model_id)
        .group_by(EvaluationRow.source_id)
    )
    counts = [(sid, int(n), float(mean)) for sid, n, mean in s.execute(stmt)]
    sources = get_sources(s, [sid for sid, _, _ in counts if sid is not None])
    out = [(sources.get(sid) if sid is not None else None, n, mean) for sid, n, mean in counts]
    out.sort(key=lambda t: (t[0] is None, t[0].tool if t[0] else "", t[0].task or "" if t[0] else ""))
    return out


# ---------------------------------------------------------------- provenance


def get_sources(s: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EvaluationSourceRow]:
    out: dict[uuid.UUID, EvaluationSourceRow] = {}
    for part in chunks(list(ids)):
        for row in s.scalars(select(EvaluationSourceRow).where(EvaluationSourceRow.id.in_(part))):
            out[row.id] = row
    return out


def get_sources_by_fingerprints(s: Session, fingerprints: Sequence[str]) -> dict[str, EvaluationSourceRow]:
    out: dict[str, EvaluationSourceRow] = {}
    for part in chunks(list(fingerprints)):
        for row in s.scalars(select(EvaluationSourceRow).where(EvaluationSourceRow.fingerprint.in_(part))):
            out[row.fingerprint] = row
    return out


def add_sources(s: Session, rows: Sequence[EvaluationSourceRow]) -> None:
    s.add_all(rows)
    s.flush()


def list_sources(
    s: Session, *, tool: str | None = None, task: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[tuple[EvaluationSourceRow, int]], int]:
    """A page of provenance records (newest first) with how many evaluations each holds."""
    conds: list[ColumnElement[bool]] = []
    if tool is not None:
        conds.append(EvaluationSourceRow.tool == tool)
    if task is not None:
        conds.append(EvaluationSourceRow.task == task)
    total = s.scalar(select(func.count()).select_from(EvaluationSourceRow).where(*conds)) or 0
    n_evals = (
        select(func.count())
        .select_from(EvaluationRow)
        .where(EvaluationRow.source_id == EvaluationSourceRow.id)
        .scalar_subquery()
    )
    stmt = (
        select(EvaluationSourceRow, n_evals)
        .where(*conds)
        .order_by(EvaluationSourceRow.created_at.desc(), EvaluationSourceRow.id)
        .limit(limit)
        .offset(offset)
    )
    return [(row, int(n)) for row, n in s.execute(stmt).tuples()], total


# ---------------------------------------------------------------- embedding state


def set_embedding_state(s: Session, row: ModelRow, fingerprint: str, n_evaluations: int) -> None:
    now = utcnow()
    if row.embedding is None:
        row.embedding = EmbeddingStateRow(
            model_id=row.id, fingerprint=fingerprint, n_evaluations=n_evaluations, updated_at=now
        )
    else:
        row.embedding.fingerprint = fingerprint
        row.embedding.n_evaluations = n_evaluations
        row.embedding.updated_at = now
    s.flush()


def count_stale_embeddings(s: Session, fingerprint: str) -> int:
    """Models whose evaluations exist but whose vector was made by another encoder (or never)."""
    has_evals = exists().where(EvaluationRow.model_id == ModelRow.id)
    current = exists().where(
        EmbeddingStateRow.model_id == ModelRow.id, EmbeddingStateRow.fingerprint == fingerprint
    )
    return s.scalar(select(func.count()).select_from(ModelRow).where(has_evals, ~current)) or 0


# ---------------------------------------------------------------- api keys


def add_api_key(s: Session, row: ApiKeyRow) -> ApiKeyRow:
    s.add(row)
    s.flush()
    return row


def get_api_key(s: Session, key_id: uuid.UUID) -> ApiKeyRow | None:
    return s.get(ApiKeyRow, key_id)


# id, name, prefix, scopes, created_at, revoked_at
ApiKeyColumns = Row[uuid.UUID, str, str, str, dt.datetime, dt.datetime | None]
_KEY_BY_HASH = select(
    ApiKeyRow.id,
    ApiKeyRow.name,
    ApiKeyRow.prefix,
    ApiKeyRow.scopes,
    ApiKeyRow.created_at,
    ApiKeyRow.revoked_at,
).where(ApiKeyRow.key_hash == bindparam("key_hash"))


def get_api_key_by_hash(s: Session, key_hash: str) -> ApiKeyColumns | None:
    """The key's columns (id, name, prefix, scopes, created_at, revoked_at), read on every authenticated
    request: a plain column read on the session's connection, no ORM object."""
    return s.connection().execute(_KEY_BY_HASH, {"key_hash": key_hash}).one_or_none()


def list_api_keys(s: Session) -> list[ApiKeyRow]:
    return list(s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)))


def revoke_api_key(s: Session, row: ApiKeyRow, when: dt.datetime) -> None:
    row.revoked_at = when
    s.flush()
