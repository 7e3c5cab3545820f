"""Evaluation provenance: the evaluation_sources table and evaluations.source_id.

Additive: existing evaluations keep a NULL source_id (scores sent without provenance).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:30:08.892109
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evaluation_sources",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tool", sa.String(length=50), nullable=False),
        sa.Column("tool_version", sa.String(length=100), nullable=True),
        sa.Column("task", sa.String(length=200), nullable=True),
        sa.Column("task_version", sa.String(length=100), nullable=True),
        sa.Column("n_shot", sa.Integer(), nullable=True),
        sa.Column("generation", sa.JSON(), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("file_name", sa.String(length=500), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_sources")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_evaluation_sources_fingerprint")),
    )
    with op.batch_alter_table("evaluation_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evaluation_sources_file_sha256"), ["file_sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluation_sources_task"), ["task"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluation_sources_tool"), ["tool"], unique=False)

    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_evaluations_source_id"), ["source_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_evaluations_source_id_evaluation_sources"),
            "evaluation_sources",
            ["source_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_evaluations_source_id_evaluation_sources"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_evaluations_source_id"))
        batch_op.drop_column("source_id")

    with op.batch_alter_table("evaluation_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluation_sources_tool"))
        batch_op.drop_index(batch_op.f("ix_evaluation_sources_task"))
        batch_op.drop_index(batch_op.f("ix_evaluation_sources_file_sha256"))

    op.drop_table("evaluation_sources")
