"""Client tests run against the real app (small real encoder, local Qdrant, SQLite and PostgreSQL)
through Starlette's TestClient, which is an httpx.Client: the client's own request code is exercised."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from locus_registry_client import LocusClient
from registry import services
from registry.services import Context
from tests.api.conftest import client
from tests.client.fleet import QUESTIONS, model_bodies

__all__ = ["client"]


@pytest.fixture
def write_key(ctx: Context) -> str:
    return services.create_api_key(ctx, "client-writer", ["read", "write"]).key


@pytest.fixture
def lc(client: TestClient, write_key: str) -> Iterator[LocusClient]:
    with LocusClient(http=client, api_key=write_key) as c:
        yield c


@pytest.fixture
def fleet(lc: LocusClient) -> dict[str, str]:
    """The fleet registered through the client: name -> id."""
    lc.add_questions(QUESTIONS)
    return {m.name: str(m.id) for m in (lc.register(**body) for body in model_bodies())}
