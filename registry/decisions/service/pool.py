"""Shared by the decision use cases: loading the embedded pool, checking ids and queries, briefs.

The pool (every embedded model's id, vector and decision metadata) is cached per process, keyed on the
encoder fingerprint and `repositories.metadata_version`, state stored in SQL: any write that changes
scores, adds or deletes a model or edits its columns changes the key in every process at once, so
several workers answer alike. A filtered pool is the cached pool restricted to the ids SQL says match
the filter (read fresh on every request, tags included).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from registry import repositories as repo
from registry.decisions.errors import EmptyQueryError, NotEmbeddedError, UnknownModelError
from registry.decisions.schemas import ModelBrief, PortfolioFilters, ReferenceQueries
from registry.ports import ModelFilter
from registry.services import get_question_vectors
from registry.services.common import PerRegistry, question_phi, settle_with
from registry.services.context import Context
from registry.tables import ModelRow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolRow:
    """A model's decision metadata read as plain columns (no ORM object): what briefs, prices and
    availability need."""

    id: uuid.UUID
    name: str
    status: str
    provider: str | None
    params_b: float | None
    input_price: float | None
    output_price: float | None
    license: str | None
    n_evaluations: int | None  # None: no embedding state


def n_evaluations(row: ModelRow | PoolRow) -> int | None:
    """Evaluations behind the model's current embedding (None: not embedded)."""
    if isinstance(row, PoolRow):
        return row.n_evaluations
    return None if row.embedding is None else row.embedding.n_evaluations


def price_of(row: ModelRow | PoolRow) -> float | None:
    """input + output price per million tokens; None when neither is known."""
    if row.input_price is None and row.output_price is None:
        return None
    return float(row.input_price or 0.0) + float(row.output_price or 0.0)


def brief(row: ModelRow | PoolRow) -> ModelBrief:
    n = n_evaluations(row)
    return ModelBrief(
        id=row.id,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]  # the CHECK constraint guarantees a Status
        provider=row.provider,
        params_b=row.params_b,
        price=price_of(row),
        n_evaluations=n,
        provisional=n is not None and settle_with(n) is not None,
    )


def to_filter(f: PortfolioFilters, **extra: object) -> ModelFilter:
    flt = ModelFilter(
        statuses=tuple(f.status),
        providers=tuple(f.provider),
        families=tuple(f.family),
        licenses=tuple(f.license),
        tags=tuple(f.tags),
        min_params=f.min_params,
        max_params=f.max_params,
        min_context_window=f.min_context_window,
        max_input_price=f.max_input_price,
        max_output_price=f.max_output_price,
    )
    return replace(flt, **extra)  # type: ignore[arg-type]


@dataclass
class Pool:
    """Embedded models matching a filter: ids, vectors (N, E) and SQL rows, in one order."""

    ids: list[uuid.UUID]
    vectors: np.ndarray
    rows: Sequence[ModelRow | PoolRow]
    # Per row: its price (`price_of`, NaN where unknown) and whether it is active; built once for the cached
    # full pool and sliced for the pools cut from it, so routing over 10,000 models does not walk the
    # rows in Python on every request. The caller may not modify them in place.
    columns: tuple[np.ndarray, np.ndarray] | None = None

    def index_of(self) -> dict[uuid.UUID, int]:
        return {m: i for i, m in enumerate(self.ids)}

    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        if self.columns is None:
            prices = np.array([np.nan if (v := price_of(r)) is None else v for r in self.rows], np.float64)
            active = np.array([r.status == "active" for r in self.rows], dtype=bool)
            self.columns = (prices, active)
        return self.columns

    def prices(self) -> np.ndarray:
        """(N,) float64: each row's price, NaN where unknown."""
        return self._columns()[0]

    def active(self) -> np.ndarray:
        """(N,) bool: whether each row's status is `active`."""
        return self._columns()[1]

    def take(self, keep: Sequence[int], ids: list[uuid.UUID] | None = None) -> Pool:
        """The rows at these positions, in this order (`ids`: their ids, when the caller has them)."""
        index = np.asarray(keep, dtype=np.int64)
        cols = self.columns
        return Pool(
            ids=[self.ids[i] for i in keep] if ids is None else ids,
            vectors=self.vectors[index],
            rows=[self.rows[i] for i in keep],
            columns=None if cols is None else (cols[0][index], cols[1][index]),
        )


class _PoolCache:
    """One process's cached full pool for one (index, database): the latest key and its pool."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[object, ...] | None = None
        self.pool: Pool | None = None
        self.at: dict[uuid.UUID, int] = {}
        self.questions: tuple[tuple[object, ...], np.ndarray, list[str]] | None = None


_CACHES = PerRegistry(_PoolCache)


def _cache_of(ctx: Context) -> _PoolCache:
    return _CACHES.of(ctx.index)  # keyed on the vector index: one per container


def _scan_pool(ctx: Context, flt: ModelFilter | None) -> Pool:
    """Uncached: scan the index for matching models and join their SQL metadata (orphan vectors skipped)."""
    ids, vectors = ctx.index.scan_models(flt)
    with ctx.session_factory() as s:
        rows = {r.id: PoolRow(*r) for r in repo.model_summaries(s)}
    keep = [i for i, m in enumerate(ids) if m in rows]
    return Pool(
        ids=[ids[i] for i in keep],
        vectors=np.asarray(vectors, dtype=np.float32).reshape(len(ids), ctx.embedder.embedding_dim)[keep],
        rows=[rows[ids[i]] for i in keep],
    )


def _full_pool(ctx: Context, key: tuple[object, ...]) -> tuple[Pool, dict[uuid.UUID, int]]:
    """The cached full pool for this key (loaded once per key per process) and its id -> row map."""
    cache = _cache_of(ctx)
    with cache.lock:  # one request loads; concurrent ones wait for it instead of scanning too
        if cache.key != key or cache.pool is None:
            # Shared by every request, so never modified in place (not flagged read-only: torch warns
            # on read-only arrays, and the predictor reads them).
            pool = _scan_pool(ctx, None)
            pool.prices()  # the columns once, under the lock: every request shares them
            cache.pool, cache.at, cache.key = pool, pool.index_of(), key
        return cache.pool, cache.at


def load_pool(ctx: Context, flt: ModelFilter | None, *, cached: bool = True) -> Pool:
    """Embedded models matching the filter, in index order: the cached full pool restricted to the ids
    SQL says match (see the module doc). The caller may not modify the arrays in place.

    `cached=False`: scan the index with the filter and read the metadata from SQL now (what the cache
    must answer exactly like)."""
    if not cached:
        return _scan_pool(ctx, flt)
    with ctx.session_factory() as s:
        key = (id(ctx.session_factory), ctx.embedder.fingerprint, repo.metadata_version(s))
        full, _ = _full_pool(ctx, key)
        if flt is None or flt == ModelFilter():
            return Pool(ids=list(full.ids), vectors=full.vectors, rows=list(full.rows), columns=full.columns)
        match = repo.model_ids_where(s, flt)
    return full.take([i for i, m in enumerate(full.ids) if m in match])


def pool_subset(ctx: Context, ids: Sequence[uuid.UUID]) -> Pool | None:
    """These models, in this order, from the cached pool when it is current and holds every one (embedded
    and registered); else None, and the caller reads them (it never loads the whole pool for a few ids)."""
    with ctx.session_factory() as s:
        key = (id(ctx.session_factory), ctx.embedder.fingerprint, repo.metadata_version(s))
    cache = _cache_of(ctx)
    with cache.lock:
        if cache.key != key or cache.pool is None:
            return None
        full, at = cache.pool, cache.at
    idx = [at.get(m) for m in ids]
    if any(i is None for i in idx):
        return None
    return full.take([i for i in idx if i is not None], ids=list(ids))


def _all_known(ids: Sequence[uuid.UUID], rows: Mapping[uuid.UUID, T], what: str) -> dict[uuid.UUID, T]:
    unknown = [str(i) for i in ids if i not in rows]
    if unknown:
        raise UnknownModelError(f"unknown {what} id(s): {', '.join(unknown[:10])}")
    return dict(rows)


def require_models(ctx: Context, ids: Sequence[uuid.UUID], what: str = "model") -> dict[uuid.UUID, ModelRow]:
    """Rows of these ids; unknown ids raise UnknownModelError naming them."""
    with ctx.session_factory() as s:
        rows = repo.get_models(s, list(ids))
        s.expunge_all()
    return _all_known(ids, rows, what)


def require_pool_rows(
    ctx: Context, ids: Sequence[uuid.UUID], what: str = "model"
) -> dict[uuid.UUID, PoolRow]:
    """As `require_models`, read as plain columns: what a pool row needs, without ORM objects."""
    with ctx.session_factory() as s:
        rows = {r.id: PoolRow(*r) for r in repo.model_summaries(s, list(ids))}
    return _all_known(ids, rows, what)


def require_vectors(ctx: Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
    """Embeddings of these (existing) models; a model without one raises NotEmbeddedError."""
    vecs = ctx.index.get_model_vectors(list(ids))
    missing = [str(i) for i in ids if i not in vecs]
    if missing:
        raise NotEmbeddedError(
            f"model(s) {', '.join(missing[:10])} have no embedding under encoder {ctx.embedder.fingerprint}: "
            "add evaluations, or run `locus-registry reindex`"
        )
    return vecs


def check_queries(texts: Sequence[str], field: str = "queries") -> None:
    for i, t in enumerate(texts):
        if not t.strip():
            raise EmptyQueryError(f"{field}[{i}] is an empty string: give the query text")


def reference_queries(ctx: Context, ref: ReferenceQueries | None) -> tuple[np.ndarray, list[str]]:
    """Encodings (Q, query_dim) and categories of reference queries: given texts/keys, else the registry's."""
    ref = ref or ReferenceQueries()
    phis: list[np.ndarray] = []
    cats: list[str] = []
    if ref.texts:
        check_queries(ref.texts, "reference.texts")
        phis.append(ctx.embedder.encode_queries(ref.texts, persist=False))
        cats += ["query"] * len(ref.texts)
    if ref.question_keys:
        rows, mat = get_question_vectors(ctx, ref.question_keys)
        phis.append(mat)
        cats += [r.category or "uncategorised" for r in rows]
    if not phis:
        phi_reg, cats_reg = _registry_queries(ctx, ref.limit)
        if cats_reg:
            phis.append(phi_reg)
            cats += cats_reg
    if not phis:
        return np.zeros((0, ctx.embedder.query_dim), dtype=np.float32), []
    return np.concatenate(phis).astype(np.float32), cats


def _registry_queries(ctx: Context, limit: int) -> tuple[np.ndarray, list[str]]:
    """The first `limit` registered questions (id order): encodings and categories, cached per process
    until a question is added (`repositories.question_version`; questions never change)."""
    cache = _cache_of(ctx)
    with ctx.session_factory() as s:
        key = (id(ctx.session_factory), ctx.embedder.fingerprint, repo.question_version(s), limit)
        with cache.lock:
            if cache.questions is not None and cache.questions[0] == key:
                return cache.questions[1], cache.questions[2]
        taken: list[tuple[uuid.UUID, str]] = []
        for batch in repo.iter_questions(s):
            taken += [(q.id, q.category or "uncategorised") for q in batch]
            if len(taken) >= limit:
                break
        taken = taken[:limit]
        phi_map, _ = question_phi(ctx, s, [q for q, _ in taken])
    phi = (
        np.stack([phi_map[q] for q, _ in taken]).astype(np.float32)
        if taken
        else np.zeros((0, ctx.embedder.query_dim), np.float32)
    )
    cats = [c for _, c in taken]
    with cache.lock:
        cache.questions = (key, phi, cats)
    return phi, cats


def _rows(ctx: Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PoolRow]:
    """The rows of these ids that are registered, as plain columns (what a brief needs; no ORM load of a
    model's relationships: at 10,000 models two such loads were 4.6 ms of a fallbacks call under cProfile)."""
    with ctx.session_factory() as s:
        return {r.id: PoolRow(*r) for r in repo.model_summaries(s, list(ids))}
