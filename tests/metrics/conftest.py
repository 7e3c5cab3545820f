"""The API fixtures of tests/api (app around a real small encoder, local Qdrant, SQLite and PostgreSQL)."""

from tests.api.conftest import client, writer

__all__ = ["client", "writer"]
