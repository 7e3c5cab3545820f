"""What every use case needs: a session factory, the vector index and the embedder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from registry.ports import Embedder, VectorIndex


class SessionSource(Protocol):
    """Anything with a session factory: enough for use cases that touch SQL only (API keys)."""

    @property
    def session_factory(self) -> sessionmaker[Session]: ...


@dataclass
class Sessions:
    """A SessionSource without index or embedder (the CLI's `keys` and `db` commands need no more)."""

    session_factory: sessionmaker[Session]


@dataclass
class Context:
    """The registry's collaborators, built once by the composition root (`api`) and passed to services."""

    session_factory: sessionmaker[Session]
    index: VectorIndex
    embedder: Embedder
    max_items: int = 100_000  # most questions or evaluations accepted in one request

    def ensure_collections(self) -> None:
        """Select (creating if needed) the vector collections of the loaded encoder."""
        self.index.ensure_collections(
            self.embedder.fingerprint, self.embedder.embedding_dim, self.embedder.query_dim
        )
