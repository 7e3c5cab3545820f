"""`VectorIndex` on Qdrant Edge (`qdrant-edge-py`): Qdrant's own engine in this process, the embedded
default. The only module that imports qdrant_edge.

Qdrant Edge is one *shard* per folder, so each collection is a folder under `path` named as a Qdrant
collection would be (`registry.vectors.collection_names`: `models_<fp>[_g<n>]`, `questions_<fp>...`),
with the same payload indexes as a server collection (`registry.vectors.PAYLOAD_INDEXES`). It has no
aliases: the serving aliases are `aliases.json` beside the folders, replaced atomically (write, fsync,
rename), which is what the serving switch needs (both names move at once). Filters are Qdrant's own,
built from the same `filter_terms` as the qdrant-client adapter, evaluated on payload indexes instead of
point by point in Python (`benchmarks/vector_backends.py`).

Like qdrant-client's local mode, a folder is open in one process at a time (Edge locks its write-ahead
log): several workers need a Qdrant server (`LOCUS_QDRANT_URL`). Searches and reads of an open shard
are thread-safe in the engine and run without a lock here; opening, dropping and resetting shards and
writing the alias file hold one lock shared by every view.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from registry.ports import ModelFilter, ModelPoint, ScoredId
from registry.vectors import (
    PAYLOAD_INDEXES,
    SERVING_ALIASES,
    UPSERT_BATCH,
    BoundCollections,
    FilterTerm,
    checked_list,
    collection_names,
    filter_terms,
)

ALIAS_FILE = "aliases.json"
_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "float": qe.PayloadSchemaType.Float,
    "integer": qe.PayloadSchemaType.Integer,
}


def _condition(term: FilterTerm) -> Any:
    kind = term[0]
    if kind == "any":
        return qe.FieldCondition(term[1], match=qe.MatchAny(term[2]))
    if kind == "value":
        return qe.FieldCondition(term[1], match=qe.MatchValue(term[2]))
    if kind == "range":
        lo, hi = (None if v is None else float(v) for v in term[2:4])
        return qe.FieldCondition(term[1], range=qe.RangeFloat(gte=lo, lte=hi))
    return qe.HasIdCondition(set(term[1]))


def to_edge_filter(flt: ModelFilter | None) -> Any:
    """Translate a ModelFilter into a Qdrant Edge filter (None when it constrains nothing)."""
    must, must_not = filter_terms(flt)
    if not must and not must_not:
        return None
    return qe.Filter(
        must=[_condition(t) for t in must] or None, must_not=[_condition(t) for t in must_not] or None
    )


class _Shards:
    """The open shards under one folder, shared by an index and its views, and the lock that guards
    opening, dropping and the alias file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open: dict[str, tuple[Any, int]] = {}  # collection -> (shard, vector size)
        self.lock = threading.RLock()

    @staticmethod
    def config(dim: int) -> Any:
        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Euclid))

    def get(self, name: str, dim: int, *, payload_indexes: bool) -> Any:
        """The shard of this collection, opened (checked against `dim`) or created."""
        with self.lock:
            held = self.open.get(name)
            if held is not None:
                if held[1] != dim:
                    raise RuntimeError(
                        f"Qdrant Edge collection {name!r} holds {held[1]}-d vectors, expected {dim}-d"
                    )
                return held[0]
            folder = self.root / name
            if folder.is_dir() and any(folder.iterdir()):
                try:
                    shard = qe.EdgeShard.load(str(folder), self.config(dim))
                except Exception as exc:
                    if "WouldBlock" in str(exc):  # the write-ahead log is locked by another opener
                        raise RuntimeError(
                            f"the vector index folder {self.root} is in use by another process (a running "
                            "server?): run imports and reindexing as jobs of that server, stop it first, "
                            "or use a Qdrant server (LOCUS_QDRANT_URL) for concurrent access"
                        ) from exc
                    raise RuntimeError(
                        f"cannot open Qdrant Edge collection {name!r} as {dim}-d vectors: {exc}"
                    ) from exc
            else:
                shard = qe.EdgeShard.create(str(folder), self.config(dim))
                if payload_indexes:
                    for field, schema in PAYLOAD_INDEXES.items():
                        shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[str(schema.value)]))
            self.open[name] = (shard, dim)
            return shard

    def drop(self, name: str) -> None:
        with self.lock:
            held = self.open.pop(name, None)
            if held is not None:
                held[0].close()
            shutil.rmtree(self.root / name, ignore_errors=True)

    def close_all(self) -> None:
        with self.lock:
            for shard, _ in self.open.values():
                shard.flush()
                shard.close()
            self.open.clear()

    def read_aliases(self) -> dict[str, str]:
        path = self.root / ALIAS_FILE
        try:
            out: dict[str, str] = json.loads(path.read_text())
            return out
        except FileNotFoundError:
            return {}

    def write_aliases(self, aliases: dict[str, str]) -> None:
        """Replace the alias file in one rename: a reader sees the old pair or the new pair."""
        with self.lock:
            tmp = self.root / f".{ALIAS_FILE}.{os.getpid()}.tmp"
            with tmp.open("w") as f:
                json.dump(aliases, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / ALIAS_FILE)


class EdgeIndex(BoundCollections):
    """The registry's vector index on Qdrant Edge, in this process, stored under `path`."""

    def __init__(self, *, path: str, question_cache: int = 200_000) -> None:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self._shards = _Shards(root)
        super().__init__(question_cache)

    # ------------------------------------------------------------ lifecycle

    def _model_shard(self) -> Any:
        return self._shards.get(self.models_collection, self._model_dim, payload_indexes=True)

    def _question_shard(self) -> Any:
        return self._shards.get(self.questions_collection, self._query_dim, payload_indexes=False)

    def ensure_collections(
        self, fingerprint: str, model_dim: int, query_dim: int, generation: int = 0
    ) -> None:
        """Create (if absent) and select the collections of this encoder (and build generation)."""
        self._bind(fingerprint, model_dim, query_dim, generation)
        self._model_shard()
        self._question_shard()

    def view(self, fingerprint: str, model_dim: int, query_dim: int, generation: int = 0) -> EdgeIndex:
        """Another index on the same shards (and lock), bound to another encoder's collections."""
        other = EdgeIndex.__new__(EdgeIndex)
        self._as_view(other)
        other.ensure_collections(fingerprint, model_dim, query_dim, generation)
        return other

    def drop_collections(self, fingerprint: str, generation: int) -> None:
        """Delete one build's collections (an old generation after a switch, a failed build)."""
        for name in collection_names(fingerprint, generation):
            if name in (self._models, self._questions):
                raise RuntimeError(f"refusing to drop {name!r}: this index is bound to it")
            self._shards.drop(name)

    def set_serving_alias(self) -> None:
        """Point the serving aliases at this index's collections, both in one atomic file replace."""
        self._shards.write_aliases(
            dict(zip(SERVING_ALIASES, (self.models_collection, self.questions_collection), strict=True))
        )

    def serving_alias(self) -> str | None:
        """The models collection the serving alias points at (None before the first switch)."""
        return self._shards.read_aliases().get(SERVING_ALIASES[0])

    def model_ids(self) -> set[uuid.UUID]:
        """Ids of every model point in the bound collection (no vectors: a consistency check)."""
        return {uuid.UUID(str(r.id)) for r in self._scroll(self._model_shard(), None, with_vector=False)}

    def healthy(self) -> bool:
        try:
            self._model_shard().count(qe.CountRequest(exact=False))
            return True
        except Exception:
            return False

    def reset(self) -> None:
        """Drop and recreate the current fingerprint's collections."""
        self._qcache.clear()
        with self._shards.lock:
            self._shards.drop(self.models_collection)
            self._shards.drop(self.questions_collection)
            self._model_shard()
            self._question_shard()

    def close(self) -> None:
        if self._owner:
            self._shards.close_all()

    # ------------------------------------------------------------ models

    def upsert_models(self, points: Sequence[ModelPoint]) -> None:
        structs = [
            qe.Point(str(p.id), checked_list(p.vector, self._model_dim), dict(p.payload)) for p in points
        ]
        self._upsert(self._model_shard(), structs)

    def delete_models(self, ids: Sequence[uuid.UUID]) -> None:
        self._delete(self._model_shard(), ids)

    def search_models(self, vector: np.ndarray, k: int, flt: ModelFilter | None = None) -> list[ScoredId]:
        """The k nearest models (ascending Euclidean distance) that satisfy the filter."""
        if k <= 0:
            return []
        hits = self._model_shard().query(
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(checked_list(vector, self._model_dim)),
                filter=to_edge_filter(flt),
                with_payload=False,
                with_vector=False,
            )
        )
        return [ScoredId(uuid.UUID(str(h.id)), float(h.score)) for h in hits]

    def get_model_vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        return self._retrieve(self._model_shard(), ids)

    def scan_models(self, flt: ModelFilter | None = None) -> tuple[list[uuid.UUID], np.ndarray]:
        """All matching model ids and their vectors (N, model_dim)."""
        ids: list[uuid.UUID] = []
        vecs: list[list[float]] = []
        for r in self._scroll(self._model_shard(), to_edge_filter(flt), with_vector=True):
            ids.append(uuid.UUID(str(r.id)))
            vecs.append(_plain(r))
        return ids, np.asarray(vecs, dtype=np.float32).reshape(len(ids), self._model_dim)

    def get_model_payloads(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """Stored payloads (the filterable metadata) of these models."""
        records = self._model_shard().retrieve([str(i) for i in ids], True, False)
        return {uuid.UUID(str(r.id)): dict(r.payload or {}) for r in records}

    def count_models(self) -> int:
        return int(self._model_shard().count(qe.CountRequest(exact=True)))

    # ------------------------------------------------------------ questions

    def upsert_questions(self, ids: Sequence[uuid.UUID], vectors: np.ndarray) -> None:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} question ids for {len(vectors)} vectors")
        structs = [
            qe.Point(str(i), checked_list(v, self._query_dim)) for i, v in zip(ids, vectors, strict=True)
        ]
        self._upsert(self._question_shard(), structs)
        self._qcache.remember(dict(zip(ids, np.asarray(vectors, dtype=np.float32), strict=True)))

    def get_question_vectors(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        return self._qcache.get(ids, lambda missing: self._retrieve(self._question_shard(), missing))

    def delete_questions(self, ids: Sequence[uuid.UUID]) -> None:
        self._qcache.forget(ids)
        self._delete(self._question_shard(), ids)

    def count_questions(self) -> int:
        return int(self._question_shard().count(qe.CountRequest(exact=True)))

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _upsert(shard: Any, structs: list[Any]) -> None:
        for start in range(0, len(structs), UPSERT_BATCH):
            shard.update(qe.UpdateOperation.upsert_points(structs[start : start + UPSERT_BATCH]))

    @staticmethod
    def _delete(shard: Any, ids: Sequence[uuid.UUID]) -> None:
        if ids:
            shard.update(qe.UpdateOperation.delete_points([str(i) for i in ids]))

    @staticmethod
    def _retrieve(shard: Any, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        out: dict[uuid.UUID, np.ndarray] = {}
        for start in range(0, len(ids), 4_096):
            for r in shard.retrieve([str(i) for i in ids[start : start + 4_096]], False, True):
                out[uuid.UUID(str(r.id))] = np.asarray(_plain(r), dtype=np.float32)
        return out

    @staticmethod
    def _scroll(shard: Any, flt: Any, *, with_vector: bool) -> Iterator[Any]:
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset, limit=1_000, filter=flt, with_payload=False, with_vector=with_vector
                )
            )
            yield from records
            if offset is None:
                return


def _plain(record: Any) -> list[float]:
    vec = record.vector
    if not isinstance(vec, list):
        raise RuntimeError(f"point {record.id} has no plain vector")
    return vec  # a list of Python floats already
