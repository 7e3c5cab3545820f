"""Building the concrete collaborators from settings: engine, Qdrant index, embedder, container."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from api.deps import Container
from api.serving import EmbedderCache, ServingSwitch
from encoder.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from encoder.inference import LocusEmbedder
from encoder.query import QueryEncoder
from registry import migrate
from registry.db import make_engine, make_session_factory
from registry.ports import VectorIndex
from registry.services.encoders import ensure_serving
from registry.settings import Settings
from registry.vectors import QdrantIndex
from registry.vectors_edge import ALIAS_FILE, EdgeIndex

log = logging.getLogger(__name__)


def _pool(settings: Settings, url: str) -> dict[str, object]:
    if url.startswith("sqlite"):
        db = make_url(url).database or ""
        if db in ("", ":memory:") or "mode=memory" in url:
            return {}  # an in-memory database keeps SQLAlchemy's own pool (one connection per thread)
        # A SQLite connection is an open file, not a server process: keep every one the pool opens.
        # With SQLAlchemy's default (5 kept, 10 more closed on return) 8 concurrent clients reopened a
        # connection every ~20 checkouts, each paying the open, the pragmas and the schema's parse.
        return {
            "pool_size": settings.db_pool_size + settings.db_max_overflow,
            "max_overflow": 0,
            "pool_timeout": settings.db_pool_timeout,
        }
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
    }


def build_read_engine(settings: Settings) -> Engine | None:
    """An engine on the read replica, when `database_read_url` is set."""
    url = settings.database_read_url
    return make_engine(url, **_pool(settings, url)) if url else None


def build_engine(settings: Settings, *, migrate_sqlite: bool | None = None) -> Engine:
    """The database engine; in embedded mode (SQLite) the schema is brought up to date first."""
    engine = make_engine(settings.database_url, **_pool(settings, settings.database_url))
    if settings.is_sqlite and (settings.auto_migrate if migrate_sqlite is None else migrate_sqlite):
        migrate.upgrade(engine)
    return engine


def embedded_backend(settings: Settings) -> str:
    """Which embedded index `qdrant_path` gets without a server: 'edge' or 'local' (see
    `Settings.vector_backend`). 'auto' keeps a folder written only by qdrant-client local mode
    (`meta.json`, no Edge alias file) on local mode, so an existing registry keeps its vectors; setting
    LOCUS_VECTOR_BACKEND=edge once and running `locus-registry reindex` moves it to Edge for good."""
    if settings.vector_backend != "auto":
        return settings.vector_backend
    if settings.qdrant_path == ":memory:":
        return "local"
    folder = Path(settings.qdrant_path)
    if (folder / "meta.json").exists() and not (folder / ALIAS_FILE).exists():
        return "local"
    return "edge"


def build_index(settings: Settings) -> VectorIndex:
    """A Qdrant server client when `qdrant_url` is set, else the embedded index at `qdrant_path`:
    Qdrant Edge, or qdrant-client local mode (`embedded_backend`)."""
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantIndex(
            url=settings.qdrant_url,
            api_key=key,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
        )
    backend = embedded_backend(settings)
    if backend == "edge" and settings.qdrant_path == ":memory:":
        raise ValueError("LOCUS_VECTOR_BACKEND=edge needs a folder: set LOCUS_QDRANT_PATH to one")
    if settings.qdrant_path != ":memory:":
        Path(settings.qdrant_path).mkdir(parents=True, exist_ok=True)
    if backend == "edge":
        return EdgeIndex(path=settings.qdrant_path)
    return QdrantIndex(path=settings.qdrant_path)


def build_embedder(settings: Settings) -> LocusEmbedder:
    """The encoder checkpoint (shipped default unless configured) with its query encoder."""
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    path = settings.encoder_checkpoint or DEFAULT_CHECKPOINT
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"encoder checkpoint folder {path} not found: set LOCUS_ENCODER_CHECKPOINT, "
            "or train one with `python -m encoder.cli train --data ... --out ...`"
        )
    model, fp = load_checkpoint(path)
    query_model = settings.query_model or model.cfg.query_model
    encoder = QueryEncoder(query_model, cache_dir=settings.query_cache_dir)
    log.info("encoder %s (fingerprint %s), query model %s", path, fp, query_model)
    return LocusEmbedder(model, encoder, fingerprint_=fp, threads=settings.torch_threads)


def build_container(settings: Settings) -> Container:
    """Everything the API and the CLI's index-touching commands need, wired together."""
    embedder = build_embedder(settings)  # first: a missing checkpoint fails before anything is created
    engine = build_engine(settings)
    read_engine = build_read_engine(settings)
    index = build_index(settings)
    container = Container(
        session_factory=make_session_factory(engine, read_engine),
        index=index,
        embedder=embedder,
        max_items=settings.max_items,
        settings=settings,
        engine=engine,
        read_engine=read_engine,
    )
    container.ensure_collections()
    # The encoder in service is recorded in SQL (the configured checkpoint on a new registry); a
    # promotion made since may have switched it: requests resolve it through `container.serving`.
    path = str(Path(settings.encoder_checkpoint or DEFAULT_CHECKPOINT).resolve())
    ensure_serving(container, path)
    container.serving = ServingSwitch(container, EmbedderCache(embedder, embedder.query_encoder))
    return container
