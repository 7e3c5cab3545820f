"""Lifecycle: jobs, registered encoders, embedding history, drift checks, route decisions; models.drifted_at.

Additive: existing models keep a NULL drifted_at; the encoder in service is registered at startup.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:31:40.086314
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_jobs_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_state"), ["state"], unique=False)

    op.create_table(
        "drift_checks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("n_shared", sa.Integer(), nullable=False),
        sa.Column("disagreement", sa.Float(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_drift_checks_model_id_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_checks")),
    )
    with op.batch_alter_table("drift_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_checks_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_drift_checks_model_id"), ["model_id"], unique=False)

    op.create_table(
        "embedding_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("n_evaluations", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("vector", sa.JSON(), nullable=False),
        sa.Column("distance_prev", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_embedding_history_model_id_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embedding_history")),
    )
    with op.batch_alter_table("embedding_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_embedding_history_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_embedding_history_model_id"), ["model_id"], unique=False)

    op.create_table(
        "encoders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('candidate', 'building', 'serving', 'previous', 'retired', 'failed')",
            name=op.f("ck_encoders_status"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_encoders_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encoders")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_encoders_fingerprint")),
    )
    with op.batch_alter_table("encoders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_encoders_status"), ["status"], unique=False)

    op.create_table(
        "route_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("query_sha256", sa.String(length=64), nullable=False),
        sa.Column("query_text", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Uuid(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("predicted", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome_score", sa.Float(), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_route_decisions_model_id_models"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_decisions")),
    )
    with op.batch_alter_table("route_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_route_decisions_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_route_decisions_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_route_decisions_query_sha256"), ["query_sha256"], unique=False)

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drifted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_models_drifted_at"), ["drifted_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_models_drifted_at"))
        batch_op.drop_column("drifted_at")

    with op.batch_alter_table("route_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_route_decisions_query_sha256"))
        batch_op.drop_index(batch_op.f("ix_route_decisions_model_id"))
        batch_op.drop_index(batch_op.f("ix_route_decisions_created_at"))

    op.drop_table("route_decisions")
    with op.batch_alter_table("encoders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_encoders_status"))

    op.drop_table("encoders")
    with op.batch_alter_table("embedding_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_embedding_history_model_id"))
        batch_op.drop_index(batch_op.f("ix_embedding_history_created_at"))

    op.drop_table("embedding_history")
    with op.batch_alter_table("drift_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_checks_model_id"))
        batch_op.drop_index(batch_op.f("ix_drift_checks_created_at"))

    op.drop_table("drift_checks")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_state"))
        batch_op.drop_index(batch_op.f("ix_jobs_kind"))
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))

    op.drop_table("jobs")
