"""The registry's two outward ports: the embedder (satisfied by `encoder`) and the vector index.

`registry` never imports torch or qdrant_client: services depend on these Protocols, and the
composition root (`api`, the CLI) wires concrete objects in.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns question texts into query encodings and a model's scored questions into an embedding."""

    @property
    def fingerprint(self) -> str:
        """Hash of the encoder checkpoint (config + weights); vectors are tied to it."""
        ...

    @property
    def embedding_dim(self) -> int:
        """Dimension of model embeddings (128 for the shipped checkpoint)."""
        ...

    @property
    def query_dim(self) -> int:
        """Dimension of query encodings (384 for all-MiniLM-L6-v2)."""
        ...

    @property
    def query_model(self) -> str:
        """Name of the sentence-transformers model that encodes question texts."""
        ...

    def encode_queries(self, texts: Sequence[str], *, persist: bool = True) -> np.ndarray:
        """(N,) texts -> (N, query_dim) float32. Each distinct text is encoded once (cached);
        `persist=False` for texts that are not registered questions (queries being routed): cached in
        memory only, bounded, never written to disk."""
        ...

    def embed(self, sets: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Embed models: each set is (phi (n_i, query_dim), scores (n_i,) in [0, 1]) -> (len(sets), E).

        Permutation invariant; callers that need bit-identical vectors pass sets in a canonical order.
        """
        ...

    def predict(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """P(correct) for every (query, model): z (M, embedding_dim), phi (Q, query_dim) -> (Q, M) float32."""
        ...

    def predictor_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored vectors (M, embedding_dim) -> the embeddings the predictor reads (a stored-vector metric
        undone; the vectors themselves without one), (M, embedding_dim) float64. Portfolios spread their
        picks there: what they are judged by is routing within them, which reads that space."""
        ...


@dataclass(frozen=True)
class ModelFilter:
    """Hard constraints on registered models, evaluated by the vector index on point payloads.

    Empty tuples / None mean "no constraint". `tags` requires every listed tag.
    """

    statuses: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    min_params: float | None = None
    max_params: float | None = None
    min_context_window: int | None = None
    max_input_price: float | None = None
    max_output_price: float | None = None
    exclude_ids: tuple[uuid.UUID, ...] = ()
    include_ids: tuple[uuid.UUID, ...] = ()  # when non-empty: only these ids


@dataclass(frozen=True)
class ModelPoint:
    """A model embedding with the payload the index filters on."""

    id: uuid.UUID
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredId:
    id: uuid.UUID
    distance: float  # Euclidean distance between embeddings


class VectorIndex(Protocol):
    """Everything the registry asks of the vector database (implemented in `registry.vectors`)."""

    def ensure_collections(
        self, fingerprint: str, model_dim: int, query_dim: int, generation: int = 0
    ) -> None:
        """Create (if absent) and select the collections tied to this encoder fingerprint (and build)."""
        ...

    def view(self, fingerprint: str, model_dim: int, query_dim: int, generation: int = 0) -> VectorIndex:
        """Another index on the same store bound to another encoder's (or build's) collections."""
        ...

    def drop_collections(self, fingerprint: str, generation: int) -> None:
        """Delete one build's collections (never the bound ones)."""
        ...

    def set_serving_alias(self) -> None:
        """Point the serving aliases at the bound collections, atomically."""
        ...

    def model_ids(self) -> set[uuid.UUID]:
        """Ids of every model point in the bound collection."""
        ...

    def healthy(self) -> bool: ...

    # model embeddings
    def upsert_models(self, points: Sequence[ModelPoint]) -> None: ...
    def delete_models(self, ids: Sequence[uuid.UUID]) -> None: ...
    def search_models(self, vector: np.ndarray, k: int, flt: ModelFilter | None = None) -> list[ScoredId]: ...
    def get_model_vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]: ...
    def scan_models(self, flt: ModelFilter | None = None) -> tuple[list[uuid.UUID], np.ndarray]:
        """All matching model ids and their vectors (N, model_dim)."""
        ...

    def count_models(self) -> int: ...

    # question encodings
    def upsert_questions(self, ids: Sequence[uuid.UUID], vectors: np.ndarray) -> None: ...
    def get_question_vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]: ...
    def delete_questions(self, ids: Sequence[uuid.UUID]) -> None: ...
    def count_questions(self) -> int: ...

    def reset(self) -> None:
        """Drop and recreate the current fingerprint's collections (used by reindex)."""
        ...


class JobHandle(Protocol):
    """What a background job's code sees of its job (implemented by the job runner).

    `progress` and `log` persist to the job row (throttled) and raise `registry.errors.JobCancelled`
    once a cancel was requested, so a handler stops at its next report. A handler returns its result
    (JSON-serialisable) and must leave SQL and vectors consistent at every report point: a job that
    dies is re-run from its `params` by another worker (`attempt` > 1), so each kind either resumes
    (idempotent steps) or starts over.
    """

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def attempt(self) -> int: ...

    def progress(self, stage: str, done: int, total: int | None) -> None: ...

    def log(self, message: str) -> None: ...
