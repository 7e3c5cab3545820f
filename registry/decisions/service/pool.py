"""Shared by the decision use cases: loading the embedded pool, checking ids and queries, briefs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from registry import repositories as repo
from registry.decisions.errors import EmptyQueryError, NotEmbeddedError, UnknownModelError
from registry.decisions.schemas import ModelBrief, PortfolioFilters, ReferenceQueries
from registry.ports import ModelFilter
from registry.services import get_question_vectors
from registry.services.common import question_phi, settle_with
from registry.services.context import Context
from registry.tables import ModelRow


def price_of(row: ModelRow) -> float | None:
    """input + output price per million tokens; None when neither is known."""
    if row.input_price is None and row.output_price is None:
        return None
    return float(row.input_price or 0.0) + float(row.output_price or 0.0)


def brief(row: ModelRow) -> ModelBrief:
    return ModelBrief(
        id=row.id,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]  # the CHECK constraint guarantees a Status
        provider=row.provider,
        params_b=row.params_b,
        price=price_of(row),
        n_evaluations=None if row.embedding is None else row.embedding.n_evaluations,
        provisional=row.embedding is not None and settle_with(row.embedding.n_evaluations) is not None,
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
    rows: list[ModelRow]

    def index_of(self) -> dict[uuid.UUID, int]:
        return {m: i for i, m in enumerate(self.ids)}


def load_pool(ctx: Context, flt: ModelFilter | None) -> Pool:
    """Scan the index for matching models and join their rows (orphan vectors are skipped)."""
    ids, vectors = ctx.index.scan_models(flt)
    with ctx.session_factory() as s:
        rows = repo.get_models(s, ids)
        s.expunge_all()
    keep = [i for i, m in enumerate(ids) if m in rows]
    return Pool(
        ids=[ids[i] for i in keep],
        vectors=np.asarray(vectors, dtype=np.float32).reshape(len(ids), ctx.embedder.embedding_dim)[keep],
        rows=[rows[ids[i]] for i in keep],
    )


def require_models(ctx: Context, ids: Sequence[uuid.UUID], what: str = "model") -> dict[uuid.UUID, ModelRow]:
    """Rows of these ids; unknown ids raise UnknownModelError naming them."""
    with ctx.session_factory() as s:
        rows = repo.get_models(s, list(ids))
        s.expunge_all()
    unknown = [str(i) for i in ids if i not in rows]
    if unknown:
        raise UnknownModelError(f"unknown {what} id(s): {', '.join(unknown[:10])}")
    return rows


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
        phis.append(ctx.embedder.encode_queries(ref.texts))
        cats += ["query"] * len(ref.texts)
    if ref.question_keys:
        rows, mat = get_question_vectors(ctx, ref.question_keys)
        phis.append(mat)
        cats += [r.category or "uncategorised" for r in rows]
    if not phis:
        with ctx.session_factory() as s:
            taken: list[tuple[uuid.UUID, str]] = []
            for batch in repo.iter_questions(s):
                taken += [(q.id, q.category or "uncategorised") for q in batch]
                if len(taken) >= ref.limit:
                    break
            taken = taken[: ref.limit]
            if taken:
                phi, _ = question_phi(ctx, s, [q for q, _ in taken])
                phis.append(np.stack([phi[q] for q, _ in taken]).astype(np.float32))
                cats += [c for _, c in taken]
    if not phis:
        return np.zeros((0, ctx.embedder.query_dim), dtype=np.float32), []
    return np.concatenate(phis).astype(np.float32), cats


def _rows(ctx: Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ModelRow]:
    with ctx.session_factory() as s:
        rows = repo.get_models(s, list(ids))
        s.expunge_all()
    return rows
