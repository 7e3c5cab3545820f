"""The API fixtures of tests/api (app around a real small encoder, local Qdrant, SQLite and PostgreSQL)."""

from tests.api.conftest import admin, client, reader, writer

__all__ = ["admin", "client", "reader", "writer"]
