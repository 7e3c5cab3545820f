"""Migrations go up and down on SQLite and PostgreSQL and match the ORM tables exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from registry import migrate
from registry.db import make_engine
from registry.tables import Base

TABLES = {
    "models",
    "model_tags",
    "questions",
    "evaluations",
    "model_embeddings",
    "api_keys",
    "evaluation_sources",
}


def test_upgrade_matches_tables_and_downgrade_removes_them(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
            assert mc.get_current_revision() is not None
            diff = compare_metadata(mc, Base.metadata)
        assert diff == [], f"migrations and registry.tables differ: {diff}"
        migrate.downgrade(engine, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(engine)  # and up again from nothing
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()
