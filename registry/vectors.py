"""`VectorIndex` on Qdrant: the only module that imports qdrant_client.

One adapter serves the three qdrant-client modes: in memory (":memory:"), local on disk (`path`),
and a server (`url`). Collections are named after the encoder fingerprint (`models_<fp>`,
`questions_<fp>`), so vectors of two encoder versions never mix; a rebuild of one encoder's vectors
(reindex, promotion) goes into the next *generation* (`models_<fp>_g<n>`) beside the one in service.
The aliases `models_serving` / `questions_serving` point at the collections in service and are
switched in one atomic Qdrant call. Distances are Euclidean.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from registry.ports import ModelFilter, ModelPoint, ScoredId

# Payload fields the registry filters on, and their Qdrant index types (server mode only:
# local mode scans payloads and ignores indexes).
PAYLOAD_INDEXES: dict[str, qm.PayloadSchemaType] = {
    "status": qm.PayloadSchemaType.KEYWORD,
    "provider": qm.PayloadSchemaType.KEYWORD,
    "family": qm.PayloadSchemaType.KEYWORD,
    "license": qm.PayloadSchemaType.KEYWORD,
    "tags": qm.PayloadSchemaType.KEYWORD,
    "params_b": qm.PayloadSchemaType.FLOAT,
    "context_window": qm.PayloadSchemaType.INTEGER,
    "input_price": qm.PayloadSchemaType.FLOAT,
    "output_price": qm.PayloadSchemaType.FLOAT,
}
UPSERT_BATCH = 512
SERVING_ALIASES = ("models_serving", "questions_serving")
log = logging.getLogger(__name__)


def collection_names(fingerprint: str, generation: int = 0) -> tuple[str, str]:
    """The models and questions collections of one build of an encoder's vectors."""
    suffix = f"_g{generation}" if generation else ""
    return f"models_{fingerprint}{suffix}", f"questions_{fingerprint}{suffix}"


# What a ModelFilter asks of a point, independent of the engine's filter classes (each adapter builds its
# own from these): ("any", field, values) one of the values; ("value", field, v) the array field holds v;
# ("range", field, lo, hi) lo <= value <= hi (None: open); ("ids", ids) the point id is one of these.
FilterTerm = tuple[Any, ...]


def filter_terms(flt: ModelFilter | None) -> tuple[list[FilterTerm], list[FilterTerm]]:
    """The conditions a filter puts on model points: (every one must hold, none may hold)."""
    must: list[FilterTerm] = []
    must_not: list[FilterTerm] = []
    if flt is None:
        return must, must_not
    for key, values in (
        ("status", flt.statuses),
        ("provider", flt.providers),
        ("family", flt.families),
        ("license", flt.licenses),
    ):
        if values:
            must.append(("any", key, list(values)))
    for tag in flt.tags:
        must.append(("value", "tags", tag))
    for key, lo, hi in (
        ("params_b", flt.min_params, flt.max_params),
        ("context_window", flt.min_context_window, None),
        ("input_price", None, flt.max_input_price),
        ("output_price", None, flt.max_output_price),
    ):
        if lo is not None or hi is not None:
            must.append(("range", key, lo, hi))
    if flt.include_ids:
        must.append(("ids", [str(i) for i in flt.include_ids]))
    if flt.exclude_ids:
        must_not.append(("ids", [str(i) for i in flt.exclude_ids]))
    return must, must_not


def _condition(term: FilterTerm) -> Any:
    kind = term[0]
    if kind == "any":
        return qm.FieldCondition(key=term[1], match=qm.MatchAny(any=term[2]))
    if kind == "value":
        return qm.FieldCondition(key=term[1], match=qm.MatchValue(value=term[2]))
    if kind == "range":
        return qm.FieldCondition(key=term[1], range=qm.Range(gte=term[2], lte=term[3]))
    return qm.HasIdCondition(has_id=term[1])


def to_filter(flt: ModelFilter | None) -> qm.Filter | None:
    """Translate a ModelFilter into a Qdrant filter (None when it constrains nothing)."""
    must, must_not = filter_terms(flt)
    if not must and not must_not:
        return None
    return qm.Filter(
        must=[_condition(t) for t in must] or None, must_not=[_condition(t) for t in must_not] or None
    )


def _only_excludes(flt: ModelFilter | None) -> bool:
    return flt is not None and flt == ModelFilter(exclude_ids=flt.exclude_ids)


class QuestionVectorCache:
    """Question encodings never change for an id (a key's text is immutable), so a bounded in-process
    cache saves re-reading up to thousands of vectors per registration. Oldest entries go first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: dict[uuid.UUID, np.ndarray] = {}
        self._lock = threading.Lock()

    def get(
        self, ids: Sequence[uuid.UUID], fetch: Callable[[list[uuid.UUID]], dict[uuid.UUID, np.ndarray]]
    ) -> dict[uuid.UUID, np.ndarray]:
        """These ids' vectors: cached ones, the rest from `fetch` (remembered); unknown ids are absent."""
        out = {i: v for i in ids if (v := self._vectors.get(i)) is not None}
        missing = [i for i in ids if i not in out]
        if missing:
            found = fetch(missing)
            self.remember(found)
            out.update(found)
        return out

    def remember(self, vectors: dict[uuid.UUID, np.ndarray]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._vectors.update(vectors)
            excess = len(self._vectors) - self.size
            if excess > 0:  # dicts keep insertion order: drop the oldest
                for key in list(itertools.islice(self._vectors, excess)):
                    self._vectors.pop(key, None)

    def forget(self, ids: Sequence[uuid.UUID]) -> None:
        with self._lock:
            for i in ids:
                self._vectors.pop(i, None)

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()


class BoundCollections:
    """What both vector adapters keep: the collections an index is bound to (one encoder fingerprint and
    build generation), their vector sizes, and the question-vector cache of that binding."""

    def __init__(self, question_cache: int) -> None:
        self._qcache = QuestionVectorCache(question_cache)
        self._models: str | None = None
        self._questions: str | None = None
        self._model_dim = 0
        self._query_dim = 0
        self._owner = True  # views share the storage; only the index that opened it closes it
        self.generation = 0

    @property
    def models_collection(self) -> str:
        if self._models is None:
            raise RuntimeError("call ensure_collections(fingerprint, ...) first")
        return self._models

    @property
    def questions_collection(self) -> str:
        if self._questions is None:
            raise RuntimeError("call ensure_collections(fingerprint, ...) first")
        return self._questions

    def _bind(self, fingerprint: str, model_dim: int, query_dim: int, generation: int) -> None:
        self._models, self._questions = collection_names(fingerprint, generation)
        self.generation = generation
        self._qcache.clear()
        self._model_dim, self._query_dim = model_dim, query_dim

    def _as_view(self, other: BoundCollections) -> None:
        """Make `other` (created without __init__) a view sharing this index's storage, with its own
        binding and question cache."""
        other.__dict__.update(self.__dict__)
        other._owner = False
        other._qcache = QuestionVectorCache(self._qcache.size)


class QdrantIndex(BoundCollections):
    """The registry's vector index on Qdrant (local mode, in memory, or a server)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        timeout: int = 30,
        question_cache: int = 200_000,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
    ) -> None:
        # Qdrant distributed mode, applied when this index creates a collection (server mode only;
        # None = the server's default).
        self._shards = (shard_number, replication_factor, write_consistency_factor)
        if url:
            self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
            self.local = False
        elif path is None or path == ":memory:":
            self._client = QdrantClient(location=":memory:")
            self.local = True
        else:
            self._client = QdrantClient(path=path)
            self.local = True
        # The local-mode client is not thread-safe; the server client is.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.local else contextlib.nullcontext()
        )
        super().__init__(question_cache)

    # ------------------------------------------------------------ lifecycle

    def ensure_collections(
        self, fingerprint: str, model_dim: int, query_dim: int, generation: int = 0
    ) -> None:
        """Create (if absent) and select the collections of this encoder (and build generation)."""
        self._bind(fingerprint, model_dim, query_dim, generation)
        with self._lock:
            self._create(self.models_collection, model_dim, payload_indexes=True)
            self._create(self.questions_collection, query_dim, payload_indexes=False)

    def _create(self, name: str, dim: int, *, payload_indexes: bool) -> None:
        try:
            self._create_or_check(name, dim, payload_indexes=payload_indexes)
        finally:
            if self.local:
                self._relax_local_durability(name)

    def _relax_local_durability(self, name: str) -> None:
        """Let local-mode storage commit without an fsync per point (WAL, synchronous=NORMAL).

        qdrant-client's on-disk local mode commits every point in its own SQLite transaction with a
        full sync, so 10,000 upserts take minutes. Qdrant is an index rebuilt from SQL by `reindex`,
        so losing the last writes on power loss is acceptable; the SQL database keeps full durability.
        This reaches into qdrant-client internals, hence the defensive lookups: if they change, the
        only effect is the slower default.
        """
        collection = getattr(getattr(self._client, "_client", None), "collections", {}).get(name)
        conn = getattr(getattr(collection, "storage", None), "storage", None)
        if isinstance(conn, sqlite3.Connection):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                log.warning("could not relax durability of local collection %s", name, exc_info=True)

    def _create_or_check(self, name: str, dim: int, *, payload_indexes: bool) -> None:
        if self._client.collection_exists(name):
            info = self._client.get_collection(name)
            params = info.config.params.vectors
            size = params.size if isinstance(params, qm.VectorParams) else None
            if size != dim:
                raise RuntimeError(f"Qdrant collection {name!r} holds {size}-d vectors, expected {dim}-d")
            return
        try:
            self._client.create_collection(
                name,
                vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.EUCLID),
                shard_number=None if self.local else self._shards[0],
                replication_factor=None if self.local else self._shards[1],
                write_consistency_factor=None if self.local else self._shards[2],
            )
        except Exception:
            # Another process (worker, replica) created it between the check and here: use theirs.
            if not self._client.collection_exists(name):
                raise
            self._create_or_check(name, dim, payload_indexes=payload_indexes)
            return
        if payload_indexes and not self.local:
            for field, schema in PAYLOAD_INDEXES.items():
                self._client.create_payload_index(name, field_name=field, field_schema=schema)

    def view(self, fingerprint: str, model_dim: int, query_dim: int, generation: int = 0) -> QdrantIndex:
        """Another index on the same client (and lock), bound to another encoder's collections: the
        serving switch and background builds use views so a request never sees a half-switched index."""
        other = QdrantIndex.__new__(QdrantIndex)
        self._as_view(other)
        other.ensure_collections(fingerprint, model_dim, query_dim, generation)
        return other

    def drop_collections(self, fingerprint: str, generation: int) -> None:
        """Delete one build's collections (an old generation after a switch, a failed build)."""
        with self._lock:
            for name in collection_names(fingerprint, generation):
                if name in (self._models, self._questions):
                    raise RuntimeError(f"refusing to drop {name!r}: this index is bound to it")
                if self._client.collection_exists(name):
                    self._client.delete_collection(name)

    def set_serving_alias(self) -> None:
        """Point the serving aliases at this index's collections, both in one atomic Qdrant call."""
        ops: list[Any] = []
        with self._lock:
            existing = {a.alias_name for a in self._client.get_aliases().aliases}
            for alias, target in zip(
                SERVING_ALIASES, (self.models_collection, self.questions_collection), strict=True
            ):
                if alias in existing:
                    ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
                ops.append(
                    qm.CreateAliasOperation(
                        create_alias=qm.CreateAlias(collection_name=target, alias_name=alias)
                    )
                )
            self._client.update_collection_aliases(change_aliases_operations=ops)

    def serving_alias(self) -> str | None:
        """The models collection the serving alias points at (None before the first switch)."""
        with self._lock:
            for a in self._client.get_aliases().aliases:
                if a.alias_name == SERVING_ALIASES[0]:
                    return str(a.collection_name)
        return None

    def model_ids(self) -> set[uuid.UUID]:
        """Ids of every model point in the bound collection (no vectors: a consistency check)."""
        out: set[uuid.UUID] = set()
        offset: Any = None
        while True:
            with self._lock:
                records, offset = self._client.scroll(
                    self.models_collection, limit=4_096, offset=offset, with_vectors=False, with_payload=False
                )
            out.update(uuid.UUID(str(r.id)) for r in records)
            if offset is None:
                return out

    def healthy(self) -> bool:
        try:
            with self._lock:
                self._client.get_collections()
            return True
        except Exception:
            return False

    def reset(self) -> None:
        """Drop and recreate the current fingerprint's collections."""
        with self._lock:
            self._qcache.clear()
            for name in (self.models_collection, self.questions_collection):
                if self._client.collection_exists(name):
                    self._client.delete_collection(name)
            self._create(self.models_collection, self._model_dim, payload_indexes=True)
            self._create(self.questions_collection, self._query_dim, payload_indexes=False)

    def close(self) -> None:
        if not self._owner:
            return
        with self._lock:
            self._client.close()

    # ------------------------------------------------------------ models

    def upsert_models(self, points: Sequence[ModelPoint]) -> None:
        structs = [
            qm.PointStruct(id=str(p.id), vector=checked_list(p.vector, self._model_dim), payload=p.payload)
            for p in points
        ]
        self._upsert(self.models_collection, structs)

    def delete_models(self, ids: Sequence[uuid.UUID]) -> None:
        self._delete(self.models_collection, ids)

    def search_models(self, vector: np.ndarray, k: int, flt: ModelFilter | None = None) -> list[ScoredId]:
        """The k nearest models (ascending Euclidean distance) that satisfy the filter."""
        if k <= 0:
            return []
        query = checked_list(vector, self._model_dim)
        if _only_excludes(flt):
            # Local mode evaluates filters point by point in Python; an id exclusion is cheaper
            # done here on a slightly longer unfiltered result.
            assert flt is not None
            excluded = {str(i) for i in flt.exclude_ids}
            with self._lock:
                res = self._client.query_points(
                    self.models_collection, query=query, limit=k + len(excluded), with_payload=False
                )
            hits = [p for p in res.points if str(p.id) not in excluded][:k]
        else:
            with self._lock:
                res = self._client.query_points(
                    self.models_collection,
                    query=query,
                    limit=k,
                    query_filter=to_filter(flt),
                    with_payload=False,
                )
            hits = res.points
        return [ScoredId(uuid.UUID(str(p.id)), float(p.score)) for p in hits]

    def get_model_vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        return self._retrieve(self.models_collection, ids)

    def scan_models(self, flt: ModelFilter | None = None) -> tuple[list[uuid.UUID], np.ndarray]:
        """All matching model ids and their vectors (N, model_dim)."""
        ids: list[uuid.UUID] = []
        vecs: list[list[float]] = []
        for record in self._scroll(self.models_collection, to_filter(flt)):
            ids.append(uuid.UUID(str(record.id)))
            vecs.append(_vector_of(record))
        arr = np.asarray(vecs, dtype=np.float32).reshape(len(ids), self._model_dim)
        return ids, arr

    def get_model_payloads(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """Stored payloads (the filterable metadata) of these models."""
        with self._lock:
            records = self._client.retrieve(
                self.models_collection, ids=[str(i) for i in ids], with_payload=True
            )
        return {uuid.UUID(str(r.id)): dict(r.payload or {}) for r in records}

    def count_models(self) -> int:
        with self._lock:
            return int(self._client.count(self.models_collection, exact=True).count)

    # ------------------------------------------------------------ questions

    def upsert_questions(self, ids: Sequence[uuid.UUID], vectors: np.ndarray) -> None:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} question ids for {len(vectors)} vectors")
        structs = [
            qm.PointStruct(id=str(i), vector=checked_list(v, self._query_dim))
            for i, v in zip(ids, vectors, strict=True)
        ]
        self._upsert(self.questions_collection, structs)
        self._qcache.remember(dict(zip(ids, np.asarray(vectors, dtype=np.float32), strict=True)))

    def get_question_vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        return self._qcache.get(ids, lambda missing: self._retrieve(self.questions_collection, missing))

    def delete_questions(self, ids: Sequence[uuid.UUID]) -> None:
        self._qcache.forget(ids)
        self._delete(self.questions_collection, ids)

    def count_questions(self) -> int:
        with self._lock:
            return int(self._client.count(self.questions_collection, exact=True).count)

    # ------------------------------------------------------------ helpers

    def _upsert(self, collection: str, structs: list[qm.PointStruct]) -> None:
        with self._lock:
            for start in range(0, len(structs), UPSERT_BATCH):
                self._client.upsert(collection, points=structs[start : start + UPSERT_BATCH], wait=True)

    def _delete(self, collection: str, ids: Sequence[uuid.UUID]) -> None:
        if not ids:
            return
        with self._lock:
            self._client.delete(collection, points_selector=qm.PointIdsList(points=[str(i) for i in ids]))

    def _retrieve(self, collection: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        out: dict[uuid.UUID, np.ndarray] = {}
        for start in range(0, len(ids), 4_096):
            part = [str(i) for i in ids[start : start + 4_096]]
            with self._lock:
                records = self._client.retrieve(collection, ids=part, with_vectors=True, with_payload=False)
            for r in records:
                out[uuid.UUID(str(r.id))] = np.asarray(_plain_vector(r), dtype=np.float32)
        return out

    def _scroll(self, collection: str, flt: qm.Filter | None) -> Iterator[qm.Record]:
        offset: Any = None
        while True:
            with self._lock:
                records, offset = self._client.scroll(
                    collection,
                    scroll_filter=flt,
                    limit=1_000,
                    offset=offset,
                    with_vectors=True,
                    with_payload=False,
                )
            yield from records
            if offset is None:
                return


def checked_list(vector: np.ndarray, dim: int) -> list[float]:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise ValueError(f"vector has {v.shape[0]} dimensions, the collection expects {dim}")
    if not np.all(np.isfinite(v)):
        raise ValueError("vector contains NaN or infinity")
    out: list[float] = v.tolist()
    return out


def _plain_vector(record: qm.Record) -> list[float]:
    vec = record.vector
    if not isinstance(vec, list):
        raise RuntimeError(f"point {record.id} has no plain vector")
    return vec  # type: ignore[return-value]


def _vector_of(record: qm.Record) -> list[float]:
    vec = record.vector
    if not isinstance(vec, list):
        raise RuntimeError(f"point {record.id} has no plain vector")
    return [float(x) for x in vec]  # type: ignore[arg-type]
