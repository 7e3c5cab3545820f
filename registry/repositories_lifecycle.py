"""SQL of the lifecycle tables: embedding history, drift checks, route decisions.

Split from `registry.repositories` by concern (that module is past 500 lines); the same rules hold:
functions take a Session, add/flush/query only, never commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from registry.repositories import chunks
from registry.tables import DriftCheckRow, EmbeddingHistoryRow, ModelRow, RouteDecisionRow

# ---------------------------------------------------------------- embedding history


def latest_history(
    s: Session, model_ids: Sequence[uuid.UUID], fingerprint: str
) -> dict[uuid.UUID, tuple[list[float] | None, int]]:
    """Per model its latest history vector under this encoder other than a probe's (None: only probes)
    and how many rows it holds there: one query per 1,000 models (a window over the model's rows)."""
    out: dict[uuid.UUID, tuple[list[float] | None, int]] = {}
    for part in chunks(list(model_ids), 1000):
        h = EmbeddingHistoryRow
        is_probe = case((h.reason == "probe", 1), else_=0)
        ranked = (
            select(
                h.model_id,
                h.vector,
                h.reason,
                func.row_number()
                .over(partition_by=h.model_id, order_by=(is_probe, h.created_at.desc(), h.id.desc()))
                .label("rn"),
                func.count().over(partition_by=h.model_id).label("n"),
            )
            .where(h.model_id.in_(part), h.fingerprint == fingerprint)
            .subquery()
        )
        stmt = select(ranked.c.model_id, ranked.c.vector, ranked.c.reason, ranked.c.n).where(ranked.c.rn == 1)
        for mid, vec, reason, n in s.execute(stmt):
            out[mid] = (None if reason == "probe" else list(vec), int(n))
    return out


def add_history(s: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of history rows given as column dicts (one statement, executemany)."""
    if rows:
        s.execute(insert(EmbeddingHistoryRow), list(rows))


def prune_history(s: Session, model_ids: Sequence[uuid.UUID], fingerprint: str, keep: int) -> int:
    """Delete all but the `keep` newest rows of these models under this encoder; returns how many went."""
    gone = 0
    for part in chunks(list(model_ids), 1000):
        h = EmbeddingHistoryRow
        ranked = (
            select(
                h.id,
                func.row_number()
                .over(partition_by=h.model_id, order_by=(h.created_at.desc(), h.id.desc()))
                .label("rn"),
            )
            .where(h.model_id.in_(part), h.fingerprint == fingerprint)
            .subquery()
        )
        old = list(s.scalars(select(ranked.c.id).where(ranked.c.rn > keep)))
        for ids in chunks(old, 1000):
            s.execute(delete(h).where(h.id.in_(list(ids))))
        gone += len(old)
    return gone


def list_history(
    s: Session, model_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[EmbeddingHistoryRow], int]:
    """A page of a model's history rows, newest first, and the total."""
    h = EmbeddingHistoryRow
    total = s.scalar(select(func.count()).select_from(h).where(h.model_id == model_id)) or 0
    stmt = (
        select(h)
        .where(h.model_id == model_id)
        .order_by(h.created_at.desc(), h.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(s.scalars(stmt)), int(total)


def history_under(s: Session, model_id: uuid.UUID, fingerprint: str) -> list[EmbeddingHistoryRow]:
    """Every history row of a model under one encoder, oldest first (bounded by the pruning)."""
    h = EmbeddingHistoryRow
    stmt = select(h).where(h.model_id == model_id, h.fingerprint == fingerprint).order_by(h.created_at, h.id)
    return list(s.scalars(stmt))


def history_encoders(s: Session, model_id: uuid.UUID) -> list[tuple[str, int, dt.datetime]]:
    """Per encoder fingerprint: how many history rows the model has under it and the latest one's time."""
    h = EmbeddingHistoryRow
    stmt = (
        select(h.fingerprint, func.count(), func.max(h.created_at))
        .where(h.model_id == model_id)
        .group_by(h.fingerprint)
        .order_by(func.max(h.created_at))
    )
    return [(fp, int(n), last) for fp, n, last in s.execute(stmt)]


# ---------------------------------------------------------------- drift checks


def add_drift_check(s: Session, row: DriftCheckRow) -> DriftCheckRow:
    s.add(row)
    s.flush()
    return row


def set_drifted(s: Session, model_id: uuid.UUID, when: dt.datetime | None) -> None:
    """Set (a time) or clear (None) a model's drift flag without touching `updated_at` (metadata caches
    key on it and nothing about the model's metadata changed)."""
    s.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(drifted_at=when, updated_at=ModelRow.updated_at)
        .execution_options(synchronize_session="fetch")
    )


def list_drift_checks(
    s: Session, model_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[DriftCheckRow], int]:
    """A page of one model's drift checks, newest first, and the total."""
    d = DriftCheckRow
    total = s.scalar(select(func.count()).select_from(d).where(d.model_id == model_id)) or 0
    stmt = (
        select(d)
        .where(d.model_id == model_id)
        .order_by(d.created_at.desc(), d.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(s.scalars(stmt)), int(total)


def drifted_models(
    s: Session, *, limit: int, offset: int
) -> tuple[list[tuple[ModelRow, DriftCheckRow | None]], int]:
    """Models flagged as drifted (most recently flagged first) with their latest drift check."""
    m = ModelRow
    total = s.scalar(select(func.count()).select_from(m).where(m.drifted_at.is_not(None))) or 0
    rows = list(
        s.scalars(
            select(m)
            .where(m.drifted_at.is_not(None))
            .order_by(m.drifted_at.desc(), m.name)
            .limit(limit)
            .offset(offset)
        )
    )
    latest = latest_drift_checks(s, [r.id for r in rows])
    return [(r, latest.get(r.id)) for r in rows], int(total)


def latest_drift_checks(s: Session, model_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, DriftCheckRow]:
    """Each model's newest drift check."""
    if not model_ids:
        return {}
    d = DriftCheckRow
    ranked = (
        select(
            d.id,
            func.row_number()
            .over(partition_by=d.model_id, order_by=(d.created_at.desc(), d.id.desc()))
            .label("rn"),
        )
        .where(d.model_id.in_(list(model_ids)))
        .subquery()
    )
    rows = s.scalars(select(d).where(d.id.in_(select(ranked.c.id).where(ranked.c.rn == 1))))
    return {r.model_id: r for r in rows}


# ---------------------------------------------------------------- route decisions


def add_route_decisions(s: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of route decisions given as column dicts (one statement, executemany)."""
    for part in chunks(list(rows), 1000):
        s.execute(insert(RouteDecisionRow), list(part))


def get_route_decision(s: Session, decision_id: uuid.UUID, *, lock: bool = False) -> RouteDecisionRow | None:
    """A decision by id; `lock` takes its row lock (PostgreSQL): two outcomes of one decision serialise."""
    stmt = select(RouteDecisionRow).where(RouteDecisionRow.id == decision_id)
    if lock:
        stmt = stmt.with_for_update()
    return s.scalars(stmt).one_or_none()


def prune_route_decisions(s: Session, before: dt.datetime) -> int:
    """Delete decisions made before `before` (past the outcome window); returns how many went."""
    result = s.execute(
        delete(RouteDecisionRow)
        .where(RouteDecisionRow.created_at < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
