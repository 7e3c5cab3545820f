"""ORM tables (SQLAlchemy 2 `Mapped` style). SQL is the source of truth; Qdrant vectors are rebuilt from it.

Keys are UUIDs, timestamps are timezone-aware UTC, and every constraint is named by `NAMING` so that
Alembic migrations come out identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    event,
    insert,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MODEL_STATUSES = ("active", "unavailable", "deprecated")
SCOPES = ("read", "write", "admin")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
# candidate: registered, not in service; building: its collections are being built for promotion;
# serving: answers requests (exactly one); previous: served before the current one (rollback target);
# retired: kept for the record; failed: a build or promotion that did not finish.
ENCODER_STATUSES = ("candidate", "building", "serving", "previous", "retired", "failed")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp; SQLite hands back naive values, which are read as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC timestamps")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModelRow(Base):
    """A registered LLM: what it is (metadata) and, through its evaluations, how it behaves."""

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(f"status IN {MODEL_STATUSES!r}", name="status"),
        CheckConstraint("params_b IS NULL OR params_b >= 0", name="params_b"),
        CheckConstraint("context_window IS NULL OR context_window >= 0", name="context_window"),
        CheckConstraint("input_price IS NULL OR input_price >= 0", name="input_price"),
        CheckConstraint("output_price IS NULL OR output_price >= 0", name="output_price"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str | None] = mapped_column(String(100), index=True)
    family: Mapped[str | None] = mapped_column(String(100))
    base_model: Mapped[str | None] = mapped_column(String(200))
    params_b: Mapped[float | None] = mapped_column(Float)  # parameter count, billions
    context_window: Mapped[int | None] = mapped_column(Integer)
    input_price: Mapped[float | None] = mapped_column(Float)  # USD per million input tokens
    output_price: Mapped[float | None] = mapped_column(Float)  # USD per million output tokens
    license: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set when a re-probe found the endpoint no longer behaves like the registered model (drift watch);
    # cleared by a re-probe that finds it the same again.
    drifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)

    tag_rows: Mapped[list[ModelTagRow]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ModelTagRow.tag", passive_deletes=True
    )
    embedding: Mapped[EmbeddingStateRow | None] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]


class ModelTagRow(Base):
    """One tag of a model (a table rather than JSON so tag filters are plain SQL on both databases)."""

    __tablename__ = "model_tags"

    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class QuestionRow(Base):
    """A question (prompt) identified by a client-chosen key; its encoding lives in Qdrant."""

    __tablename__ = "questions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    text: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(200))
    benchmark: Mapped[str | None] = mapped_column(String(200), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvaluationRow(Base):
    """The score of one model on one question; sending the pair again replaces the score."""

    __tablename__ = "evaluations"
    __table_args__ = (
        CheckConstraint("score >= 0 AND score <= 1", name="score"),
        # Covers the per-question score totals `similar` re-reads after every write (index-only scan).
        Index("ix_evaluations_question_score", "question_id", "score"),
    )

    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    question_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("questions.id", ondelete="CASCADE"), primary_key=True
    )
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Where the score came from (tool, task, settings, file); NULL for scores sent without provenance.
    source_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("evaluation_sources.id", ondelete="SET NULL"), index=True
    )


class EvaluationSourceRow(Base):
    """Provenance of imported scores: the tool, task and settings that produced them, and the file.

    `fingerprint` hashes all the other identifying fields, so importing the same file again finds
    the same row (imports are idempotent) while a changed setting or file makes a new one.
    """

    __tablename__ = "evaluation_sources"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    tool: Mapped[str] = mapped_column(String(50), index=True)
    tool_version: Mapped[str | None] = mapped_column(String(100))
    task: Mapped[str | None] = mapped_column(String(200), index=True)
    task_version: Mapped[str | None] = mapped_column(String(100))
    n_shot: Mapped[int | None] = mapped_column(Integer)
    generation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # sampling settings
    run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    file_name: Mapped[str | None] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmbeddingStateRow(Base):
    """Which encoder produced a model's current vector, from how many evaluations, and when."""

    __tablename__ = "model_embeddings"

    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    n_evaluations: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKeyRow(Base):
    """An API key, stored as the SHA-256 of the secret (keys are long random tokens, so no salt needed)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # first characters of the key, to recognise it
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated subset of SCOPES
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class JobRow(Base):
    """A background job (import, reindex, train, promote): claimed by one worker with row locking.

    State moves queued -> running -> succeeded | failed | cancelled. A running job whose heartbeat is
    older than the lease is taken over by another worker (the first one died); each kind says
    whether it resumes or starts over.
    """

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stage: Mapped[str | None] = mapped_column(String(64))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    log: Mapped[str] = mapped_column(Text, default="")  # the last lines only (bounded by the runner)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class EncoderRow(Base):
    """A registered encoder checkpoint. Its vectors live in collections named after its fingerprint;
    `generation` tells apart two builds of the same encoder's collections (a reindex builds the next
    one beside the one in service and switches to it)."""

    __tablename__ = "encoders"
    __table_args__ = (CheckConstraint(f"status IN {ENCODER_STATUSES!r}", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(1000))  # checkpoint folder
    status: Mapped[str] = mapped_column(String(16), default="candidate", index=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class EmbeddingHistoryRow(Base):
    """One (re-)embedding of a model: by which encoder, from how many evaluations, why, and how far
    the vector moved from the model's previous vector under the same encoder."""

    __tablename__ = "embedding_history"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    n_evaluations: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))  # register, evaluations, reindex, promote, probe
    vector: Mapped[list[float]] = mapped_column(JSON)
    distance_prev: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DriftCheckRow(Base):
    """A re-probe of a model's endpoint judged against its stored scores (the fingerprint test)."""

    __tablename__ = "drift_checks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    drifted: Mapped[bool] = mapped_column(Boolean, default=False)
    n_shared: Mapped[int] = mapped_column(Integer)
    disagreement: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class RouteDecisionRow(Base):
    """A routing decision that an outcome can later be reported for (`POST /v1/route/outcomes`)."""

    __tablename__ = "route_decisions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    query_sha256: Mapped[str] = mapped_column(String(64), index=True)
    query_text: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL"), index=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    predicted: Mapped[float | None] = mapped_column(Float)  # the chosen model's predicted P(correct)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    outcome_score: Mapped[float | None] = mapped_column(Float)
    outcome_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# What a change to each table changes, for caches that key on `registry_state` (`registry.db` bumps the
# counters in the transaction of the write): `scores` (a model's evaluations, embedding or existence),
# `metadata` (also a model's columns or tags; every `scores` change is one too), `questions`. A
# models UPDATE changes metadata only; an INSERT or DELETE changes scores too.
STATE_COUNTERS: dict[str, tuple[str, ...]] = {
    "models": ("scores", "metadata"),
    "model_embeddings": ("scores", "metadata"),
    "evaluations": ("scores", "metadata"),
    "evaluation_sources": ("scores", "metadata"),
    "embedding_history": ("scores", "metadata"),
    "model_tags": ("metadata",),
    "questions": ("questions",),
}
METADATA_ONLY_UPDATES = frozenset({"models"})


class RegistryStateRow(Base):
    """One row of change counters, bumped by every committed write (see `STATE_COUNTERS`): what a
    per-process cache reads to know whether the registry changed, by primary key in O(1), whatever the
    number of models (the aggregate it replaced read every model's embedding state: 10 ms at 10,000)."""

    __tablename__ = "registry_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scores: Mapped[int] = mapped_column(BigInteger, default=0)
    metadata_: Mapped[int] = mapped_column("metadata", BigInteger, default=0)
    questions: Mapped[int] = mapped_column(BigInteger, default=0)


@event.listens_for(RegistryStateRow.__table__, "after_create")
def _first_state(target: Any, connection: Any, **_: Any) -> None:
    """A schema made by `create_all` (tests, benchmarks) starts with its one row, as migration 0005 does."""
    connection.execute(insert(target).values(id=1, scores=0, metadata=0, questions=0))
