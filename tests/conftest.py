"""Shared fixtures: databases (SQLite file and PostgreSQL schema per test), a local Qdrant, a small encoder.

The PostgreSQL URL is `postgresql+psycopg://postgres@127.0.0.1:5432/test` unless LOCUS_TEST_PG_URL
says otherwise. Each test gets its own schema (created and dropped around it), so tests never see
each other's rows. When the server is unreachable the PostgreSQL variants are skipped with the reason
(or fail, when LOCUS_TEST_REQUIRE_PG is set, as CI does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from encoder.config import LocusConfig
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.query import QueryEncoder
from registry.db import make_engine, make_session_factory
from registry.ports import VectorIndex
from registry.services import Context
from registry.tables import Base
from registry.vectors_edge import EdgeIndex

PG_URL = os.environ.get("LOCUS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SMALL = LocusConfig(width=32, heads=2, inducing=8, ffn=64, embed_dim=16, pred_hidden=16)
_pg_state: dict[str, str | None] = {}


def pg_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per session)."""
    if "reason" not in _pg_state:
        try:
            eng = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with eng.connect() as conn:
                conn.execute(text("SELECT 1"))
            eng.dispose()
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL at {make_url(PG_URL).render_as_string()} unreachable: {exc}"
    return _pg_state["reason"]


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections use a fresh, empty PostgreSQL schema (dropped afterwards)."""
    reason = pg_unreachable()
    if reason:
        if os.environ.get("LOCUS_TEST_REQUIRE_PG"):  # CI: a missing server is a failure, not a skip
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a temp SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database with the schema created from the tables."""
    eng = make_engine(db_url)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def query_encoder() -> QueryEncoder:
    return QueryEncoder(cache_dir=Path.home() / ".cache" / "locus-registry" / "query")


@pytest.fixture(scope="session")
def embedder(query_encoder: QueryEncoder) -> LocusEmbedder:
    """The real LOCUS encoder at a small size (random init, fixed seed)."""
    torch.manual_seed(0)
    return LocusEmbedder(LocusModel(SMALL), query_encoder)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[VectorIndex]:
    """The embedded default: Qdrant Edge (`tests/registry/test_vectors.py` runs the adapter tests on
    qdrant-client's local mode too)."""
    idx = EdgeIndex(path=str(tmp_path / "qdrant"))
    yield idx
    idx.close()


@pytest.fixture
def ctx(engine: Engine, index: VectorIndex, embedder: LocusEmbedder) -> Context:
    c = Context(session_factory=make_session_factory(engine), index=index, embedder=embedder)
    c.ensure_collections()
    return c
