"""What every use case needs: a session factory, the vector index and the embedder."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from registry.ports import Embedder, VectorIndex


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
