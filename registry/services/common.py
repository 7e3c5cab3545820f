"""Helpers shared by the use cases: row -> schema conversion, payloads, embedding from SQL state."""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.errors import IndexUnavailable, NotFound, PayloadTooLarge, RegistryError
from registry.ports import ModelPoint
from registry.schemas import EmbeddingRead, ModelRead
from registry.services.context import Context
from registry.services.history import EmbeddingReason, record_embeddings
from registry.tables import ModelRow, QuestionRow, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C")

# stage, done, total: lets the CLI draw progress bars without the services knowing about tqdm.
Progress = Callable[[str, int, int], None]


def check_size(ctx: Context, n: int, what: str) -> None:
    if n > ctx.max_items:
        raise PayloadTooLarge(f"{n} {what} in one request; the limit is {ctx.max_items}")


def model_payload(row: ModelRow) -> dict[str, Any]:
    """The metadata a vector index filters on (None fields are left out so range filters skip them)."""
    payload: dict[str, Any] = {
        "name": row.name,
        "status": row.status,
        "provider": row.provider,
        "family": row.family,
        "license": row.license,
        "tags": row.tags,
        "params_b": row.params_b,
        "context_window": row.context_window,
        "input_price": row.input_price,
        "output_price": row.output_price,
    }
    return {k: v for k, v in payload.items() if v is not None}


# An embedding from fewer evaluations moves as more arrive: the geometry benchmark shows distances
# settling from about 128 random evaluations (LOCUS.md: onboarding quality saturates near 128).
SETTLED_EVALUATIONS = 128


def settle_with(n_evaluations: int) -> str | None:
    """None when an embedding from n evaluations is settled, else what more would settle it."""
    if n_evaluations >= SETTLED_EVALUATIONS:
        return None
    return (
        f"embedded from {n_evaluations} evaluations: add at least {SETTLED_EVALUATIONS - n_evaluations} "
        f"more (the probe set, GET /v1/probes, makes them comparable with other models)"
    )


def to_model_read(row: ModelRow | repo.ModelRecord, vector: np.ndarray | None = None) -> ModelRead:
    emb = None
    if row.embedding is not None:
        more = settle_with(row.embedding.n_evaluations)
        emb = EmbeddingRead(
            fingerprint=row.embedding.fingerprint,
            n_evaluations=row.embedding.n_evaluations,
            updated_at=row.embedding.updated_at,
            vector=None if vector is None else [float(x) for x in vector],
            provisional=more is not None,
            settle_with=more,
        )
    return ModelRead(
        id=row.id,
        name=row.name,
        provider=row.provider,
        family=row.family,
        base_model=row.base_model,
        params_b=row.params_b,
        context_window=row.context_window,
        input_price=row.input_price,
        output_price=row.output_price,
        license=row.license,
        status=row.status,  # type: ignore[arg-type]  # the CHECK constraint guarantees a Status
        tags=row.tags,
        metadata=dict(row.meta or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        embedding=emb,
    )


def registered_records(
    s: Session,
    of: uuid.UUID | None,
    ordered: Sequence[uuid.UUID],
    k: int,
    read: Callable[[Sequence[uuid.UUID]], dict[uuid.UUID, repo.ModelRecord]] | None = None,
) -> tuple[dict[uuid.UUID, repo.ModelRecord], list[uuid.UUID]]:
    """Records of model `of` (NotFound if it is not registered) and of the first k ids of `ordered` that
    are registered, read in pages of what is still missing: an id without a row is an orphan vector left
    by a failed delete, skipped so that it does not cost the answer a place. Returns the records and
    those first k ids, in order. `read`: how records are read (default `repositories.model_records`;
    `RecordCache.reader` for the cached hot paths)."""
    rows: dict[uuid.UUID, repo.ModelRecord] = {}
    chosen: list[uuid.UUID] = []
    want, start = ([of] if of is not None else []), 0
    read_records = read or (lambda ids: repo.model_records(s, ids))
    while True:
        batch = list(ordered[start : start + k - len(chosen)])
        rows.update(read_records([*want, *batch]))
        if want and of not in rows:
            raise NotFound(f"model {of} does not exist")
        chosen += [m for m in batch if m in rows]
        want, start = [], start + len(batch)
        if len(chosen) >= k or start >= len(ordered):
            return rows, chosen


@contextmanager
def index_write() -> Iterator[None]:
    """Turn a failing vector write into IndexUnavailable, so the enclosing transaction rolls back."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        log.exception("vector index write failed")
        raise IndexUnavailable(f"the vector index rejected the write ({type(exc).__name__}: {exc})") from exc


def question_phi(
    ctx: Context,
    s: Session,
    question_ids: Sequence[uuid.UUID],
    cache: dict[uuid.UUID, np.ndarray] | None = None,
) -> tuple[dict[uuid.UUID, np.ndarray], list[uuid.UUID]]:
    """Query encodings of these questions: from `cache`, then the index, then encoded from SQL text.

    Returns the encodings and the ids that had to be encoded (their vectors still need an upsert).
    """
    out: dict[uuid.UUID, np.ndarray] = {}
    need = [q for q in question_ids if cache is None or q not in cache]
    if cache is not None:
        out.update({q: cache[q] for q in question_ids if q in cache})
    if need:
        out.update(ctx.index.get_question_vectors(need))
    missing = [q for q in question_ids if q not in out]
    if missing:
        rows = repo.get_questions(s, missing)
        texts = [rows[q].text for q in missing]
        vecs = ctx.embedder.encode_queries(texts)
        out.update(zip(missing, vecs, strict=True))
    return out, missing


def embed_rows(
    ctx: Context,
    s: Session,
    rows: Sequence[ModelRow],
    cache: dict[uuid.UUID, np.ndarray] | None = None,
    known: dict[uuid.UUID, list[tuple[uuid.UUID, float]]] | None = None,
    *,
    reason: EmbeddingReason | None = None,
) -> tuple[list[ModelPoint], dict[uuid.UUID, np.ndarray]]:
    """Embed each model from its full evaluation set in canonical order (sorted by question id).

    Records the embedding state in SQL (flushed) and, with a `reason`, one embedding-history row per
    model (`registry.services.history`; None: the caller records it). Returns the points to upsert
    (models with no evaluations get none) and the query encodings that were missing from the index.
    `known` gives each model's (question_id, score) pairs instead of reading them back from SQL.
    """
    if known is not None:  # a brand-new model's full set is exactly what was just written
        scores = {m: sorted(pairs, key=lambda p: p[0]) for m, pairs in known.items()}
    else:
        scores = repo.model_scores(s, [r.id for r in rows])
    needed = sorted({q for pairs in scores.values() for q, _ in pairs})
    phi, missing = question_phi(ctx, s, needed, cache)
    todo = [r for r in rows if scores.get(r.id)]
    sets = []
    for r in todo:
        pairs = scores[r.id]
        sets.append(
            (
                np.stack([phi[q] for q, _ in pairs]).astype(np.float32),  # (n, query_dim)
                np.asarray([y for _, y in pairs], dtype=np.float32),  # (n,)
            )
        )
    # One set per call: padding in a shared batch perturbs the last float bits, and a model's vector
    # must not depend on which other models it was embedded with (register vs reindex vs import).
    vectors = [ctx.embedder.embed([one])[0] for one in sets]
    points = []
    for r, v in zip(todo, vectors, strict=True):
        repo.set_embedding_state(s, r, ctx.embedder.fingerprint, len(scores[r.id]))
        points.append(ModelPoint(id=r.id, vector=v, payload=model_payload(r)))
    if reason is not None:
        record_embeddings(
            s, ctx.embedder.fingerprint, [(p.id, p.vector, len(scores[p.id])) for p in points], reason
        )
    return points, {q: phi[q] for q in missing}


def upsert_vectors(
    ctx: Context, points: Sequence[ModelPoint], new_phi: Mapping[uuid.UUID, np.ndarray]
) -> None:
    """Write model vectors and newly encoded question vectors (inside the caller's transaction)."""
    with index_write():
        if new_phi:
            ids = list(new_phi)
            ctx.index.upsert_questions(ids, np.stack([new_phi[i] for i in ids]))
        if points:
            ctx.index.upsert_models(points)


def new_question(key: str, text: str, category: str | None, benchmark: str | None) -> QuestionRow:
    return QuestionRow(
        id=uuid.uuid4(), key=key, text=text, category=category, benchmark=benchmark, created_at=utcnow()
    )


def score_matrix(
    models: Sequence[uuid.UUID],
    scores: dict[uuid.UUID, list[tuple[uuid.UUID, float]]],
    questions: Sequence[uuid.UUID],
) -> np.ndarray:
    """(M, Q) float32 scores of these models on these questions (in the given orders), NaN where a
    model was not scored: the dense form the decision algorithms read."""
    col = {q: i for i, q in enumerate(questions)}
    out = np.full((len(models), len(questions)), np.nan, dtype=np.float32)  # (M, Q)
    for r, m in enumerate(models):
        pairs = [(col[q], y) for q, y in scores.get(m, []) if q in col]
        if pairs:
            out[r, [c for c, _ in pairs]] = [y for _, y in pairs]
    return out


class RecordCache:
    """Models' records (`repositories.ModelRecord`; None: no such model) valid for one
    `repositories.metadata_version`, which every change of a model's columns, tags, embedding state or
    existence bumps: what `similar` returns about each neighbour, read from SQL once per model and
    version in this process instead of on every request (two statements, about a fifth of a warm call)."""

    MAX = 50_000  # entries; beyond it the cache starts over

    def __init__(self) -> None:
        self._key: object = None
        self._rows: dict[uuid.UUID, repo.ModelRecord | None] = {}
        self._lock = threading.Lock()

    def reader(
        self, s: Session, version: object = None
    ) -> Callable[[Sequence[uuid.UUID]], dict[uuid.UUID, repo.ModelRecord]]:
        """A `registered_records` reader for this session, for `version` (`repositories.metadata_version`,
        read here when not given)."""
        key = repo.metadata_version(s) if version is None else version

        def read(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, repo.ModelRecord]:
            with self._lock:
                if self._key != key:
                    self._key, self._rows = key, {}
                have = {m: self._rows[m] for m in ids if m in self._rows}
            missing = [m for m in ids if m not in have]
            if missing:
                got = repo.model_records(s, missing)
                have.update({m: got.get(m) for m in missing})
                with self._lock:
                    if self._key == key:  # read after the key was: at least as new as that version
                        if len(self._rows) + len(missing) > self.MAX:
                            self._rows = {}
                        self._rows.update({m: got.get(m) for m in missing})
            return {m: r for m, r in have.items() if r is not None}

        return read


class PerRegistry(Generic[C]):
    """One cache per registry in this process, made on first use: keyed weakly on an object the registry
    owns (its vector index or session factory), so two registries in one process never share entries and
    a dropped registry frees its cache."""

    def __init__(self, make: Callable[[], C]) -> None:
        self._make = make
        self._by: weakref.WeakKeyDictionary[object, C] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, owner: object) -> C:
        with self._lock:
            cache = self._by.get(owner)
            if cache is None:
                cache = self._by[owner] = self._make()
            return cache

    def clear(self) -> None:
        with self._lock:
            self._by.clear()


_RECORDS = PerRegistry(RecordCache)


def record_cache(ctx: Context) -> RecordCache:
    """This registry's record cache in this process."""
    return _RECORDS.of(ctx.session_factory)
