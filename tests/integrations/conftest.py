"""LiteLLM integration fixtures: the real app (small real encoder, local Qdrant, SQLite and PostgreSQL) with
the fleet registered; every deployment answers offline through LiteLLM's `mock_response`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

# LiteLLM fetches its model price map from GitHub at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
from fastapi.testclient import TestClient

from locus_registry_client import LocusClient
from registry import services
from registry.services import Context
from tests.api.conftest import client
from tests.client.fleet import QUESTIONS, model_bodies

__all__ = ["client"]

FAILING = "flagship"  # its deployment always fails (LiteLLM raises InternalServerError)


def answer_of(name: str) -> str:
    return f"answer from {name}"


@pytest.fixture
def key(ctx: Context) -> str:
    return services.create_api_key(ctx, "gateway", ["read", "write"]).key


@pytest.fixture
def lc(client: TestClient, key: str) -> Iterator[LocusClient]:
    with LocusClient(http=client, api_key=key) as c:
        yield c


@pytest.fixture
def fleet(lc: LocusClient) -> dict[str, str]:
    """The fleet, each model with its LiteLLM deployment parameters in `metadata.litellm_params`."""
    lc.add_questions(QUESTIONS)
    out = {}
    for body in model_bodies():
        name = body["name"]
        mock: Any = "litellm.InternalServerError" if name == FAILING else answer_of(name)
        params = {"model": f"openai/{name}", "api_key": "sk-offline", "mock_response": mock}
        out[name] = str(lc.register(**body, metadata={"litellm_params": params}).id)
    return out
