"""`registry_state`: one row of change counters, bumped in the transaction of every write.

Per-process caches (`similar`'s behaviour cache, decision pools, calibrations, probes) asked on every
request whether the registry had changed by aggregating every model's embedding state: 2.1 ms at 1,000
models and 10.5 ms at 10,000 on SQLite (timed by hand on the load benchmark's seeded registry), more than
the rest of a cached request. The counters are read by primary key instead; `registry.db` bumps them
just before a writing transaction commits (`registry.tables.STATE_COUNTERS` says which table changes
which counter).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scores", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.BigInteger(), nullable=False),
        sa.Column("questions", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_registry_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_state")),
    )
    op.bulk_insert(state, [{"id": 1, "scores": 0, "metadata": 0, "questions": 0}])


def downgrade() -> None:
    op.drop_table("registry_state")
