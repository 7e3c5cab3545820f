"""API fixtures: an app around the test Context (small real encoder, local Qdrant, SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Container
from registry import services
from registry.services import Context
from registry.settings import Settings


def make_container(ctx: Context, **settings: object) -> Container:
    # No start-up warm-up unless a test asks for it (its thread would race the test's first requests), and
    # no frozen heap (the apps of a whole test session would stay out of the collector's reach).
    settings = {"cache_warmup": False, "gc_freeze": False, **settings}
    cfg = Settings(database_url="sqlite://", max_body_bytes=200_000, max_items=500, **settings)  # type: ignore[arg-type]
    return Container(
        session_factory=ctx.session_factory,
        index=ctx.index,
        embedder=ctx.embedder,
        max_items=cfg.max_items,
        settings=cfg,
    )


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(container=make_container(ctx))) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin(ctx: Context) -> dict[str, str]:
    return bearer(services.create_api_key(ctx, "admin", ["admin"]).key)


@pytest.fixture
def writer(ctx: Context) -> dict[str, str]:
    return bearer(services.create_api_key(ctx, "writer", ["write"]).key)


@pytest.fixture
def reader(ctx: Context) -> dict[str, str]:
    return bearer(services.create_api_key(ctx, "reader", ["read"]).key)
