"""SQL of the encoder lifecycle: registered encoders, the one in service, models changed since a time.

Split from `repositories.py` by concern (that module holds models, questions and evaluations); the
same rules hold: functions take a Session, never commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from registry.tables import EmbeddingStateRow, EncoderRow, EvaluationRow, ModelRow, utcnow


def serving(s: Session, *, lock: bool = False) -> EncoderRow | None:
    """The encoder in service (None before the first one is recorded)."""
    stmt = select(EncoderRow).where(EncoderRow.status == "serving")
    if lock:
        stmt = stmt.with_for_update()
    return s.scalars(stmt).first()


def serving_key(s: Session) -> tuple[str, int, str] | None:
    """(fingerprint, generation, checkpoint path) of the encoder in service: one indexed row."""
    row = s.execute(
        select(EncoderRow.fingerprint, EncoderRow.generation, EncoderRow.path).where(
            EncoderRow.status == "serving"
        )
    ).first()
    return None if row is None else (str(row[0]), int(row[1]), str(row[2]))


def get(s: Session, encoder_id: uuid.UUID, *, lock: bool = False) -> EncoderRow | None:
    stmt = select(EncoderRow).where(EncoderRow.id == encoder_id)
    if lock:
        stmt = stmt.with_for_update()
    return s.scalars(stmt).first()


def by_fingerprint(s: Session, fingerprint: str) -> EncoderRow | None:
    return s.scalars(select(EncoderRow).where(EncoderRow.fingerprint == fingerprint)).first()


def by_status(s: Session, status: str) -> list[EncoderRow]:
    return list(s.scalars(select(EncoderRow).where(EncoderRow.status == status)))


def list_all(s: Session) -> list[EncoderRow]:
    return list(s.scalars(select(EncoderRow).order_by(EncoderRow.created_at.desc(), EncoderRow.id)))


def changed_since(
    s: Session, since: dt.datetime, *, embeddings: bool = True, strictly_after: bool = False
) -> dict[uuid.UUID, tuple[str, str]]:
    """Models whose metadata (or, with `embeddings`, embedding state) changed at or after `since`
    (`strictly_after`: after it), each with its (metadata, embedding state) change times as a stamp."""

    def after(col: Any) -> Any:
        return col > since if strictly_after else col >= since

    cond = (
        or_(after(ModelRow.updated_at), after(EmbeddingStateRow.updated_at))
        if embeddings
        else after(ModelRow.updated_at)
    )
    stmt = (
        select(ModelRow.id, ModelRow.updated_at, EmbeddingStateRow.updated_at)
        .outerjoin(EmbeddingStateRow, EmbeddingStateRow.model_id == ModelRow.id)
        .where(cond)
        .order_by(ModelRow.id)
    )
    return {m: (str(a), str(b)) for m, a, b in s.execute(stmt)}


def not_embedded_by(s: Session, fingerprint: str) -> list[uuid.UUID]:
    """Models with evaluations whose recorded vector is not this encoder's (written by another one)."""
    has_evals = select(EvaluationRow.model_id).where(EvaluationRow.model_id == ModelRow.id).exists()
    stmt = (
        select(ModelRow.id)
        .outerjoin(EmbeddingStateRow, EmbeddingStateRow.model_id == ModelRow.id)
        .where(
            has_evals,
            or_(EmbeddingStateRow.fingerprint.is_(None), EmbeddingStateRow.fingerprint != fingerprint),
        )
        .order_by(ModelRow.id)
    )
    return list(s.scalars(stmt))


def relabel_embeddings(
    s: Session, fingerprint: str, model_ids: Sequence[uuid.UUID], *, at: dt.datetime | None = None
) -> None:
    """Record that these models' vectors in service now come from `fingerprint` (at a switch, time `at`)."""
    now = at or utcnow()
    for start in range(0, len(model_ids), 1_000):
        part = list(model_ids[start : start + 1_000])
        s.execute(
            update(EmbeddingStateRow)
            .where(EmbeddingStateRow.model_id.in_(part))
            .values(fingerprint=fingerprint, updated_at=now)
        )


def with_evaluations(s: Session) -> set[uuid.UUID]:
    """Models that have at least one evaluation (exactly these have a vector in service)."""
    return set(s.scalars(select(EvaluationRow.model_id).distinct()))


def evaluation_counts(s: Session, model_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Recorded evaluation count of each model's vector in service (its embedding state)."""
    out: dict[uuid.UUID, int] = {}
    for start in range(0, len(model_ids), 1_000):
        part = list(model_ids[start : start + 1_000])
        rows = s.execute(
            select(EmbeddingStateRow.model_id, EmbeddingStateRow.n_evaluations).where(
                EmbeddingStateRow.model_id.in_(part)
            )
        )
        out.update({m: int(n) for m, n in rows})
    return out
