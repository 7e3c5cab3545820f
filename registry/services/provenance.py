"""Use cases on provenance: models embedded from only the scores of a given provenance.

A decision that must rest on comparable evaluations (say, only lm-eval 0-shot runs of one task
version) passes an `EvaluationFilter`. The stored vector of a model is made from *all* its
evaluations, so it cannot answer such a question: every model the decision compares is embedded on
the fly from only its evaluations of that provenance (`ProvenanceVectors`; nothing is written), scores
on shared questions are read from that provenance only, and models without any evaluation of it are
left out. The response's `provenance` (`ProvenanceUsed`) says how many models and evaluations that was
and what still read the whole registry.

Cost: reading the compared models' scores of that provenance and one embedding per model (lart, 138
models x 300 evaluations, shipped encoder, one CPU thread: about 3.7 s, half SQL, half encoder), so at
most `MAX_MODELS` models are re-embedded per request. The vectors are cached per process (`_CACHE`),
keyed on the encoder fingerprint, the filter and `repositories.registry_version` (SQL state that every
write of scores changes), so a repeated request re-embeds nothing and every worker answers alike.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from registry import repositories as repo
from registry.errors import InvalidInput, NotFound
from registry.ports import ModelFilter, ScoredId
from registry.schemas import (
    EvaluationFilter,
    ProvenanceEmbeddingRead,
    ProvenanceUsed,
    SimilarModel,
    SimilarRead,
)
from registry.services import similarity
from registry.services.common import PerRegistry, question_phi, to_model_read
from registry.services.context import Context

MAX_MODELS = 1000  # re-embedded per request: ~25 s at 300 evaluations each on one CPU thread
CACHED_FILTERS = 8  # provenance filters whose vectors a process keeps


class _VectorCache:
    """One process's re-embedded vectors for one registry: per (fingerprint, filter), model -> (vector,
    evaluations), valid while `registry_version` is unchanged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version: object = None
        self.by_filter: OrderedDict[tuple[str, str], dict[uuid.UUID, tuple[np.ndarray, int]]] = OrderedDict()

    def get(self, version: object, key: tuple[str, str]) -> dict[uuid.UUID, tuple[np.ndarray, int]]:
        """The cached vectors of this filter (a copy), after dropping everything if the data changed."""
        with self.lock:
            if version != self.version:
                self.version, self.by_filter = version, OrderedDict()
            got = self.by_filter.get(key)
            if got is None:
                return {}
            self.by_filter.move_to_end(key)
            return dict(got)

    def put(
        self, version: object, key: tuple[str, str], new: dict[uuid.UUID, tuple[np.ndarray, int]]
    ) -> None:
        with self.lock:
            if version != self.version:  # the data changed while these were computed: keep nothing
                return
            self.by_filter.setdefault(key, {}).update(new)
            self.by_filter.move_to_end(key)
            while len(self.by_filter) > CACHED_FILTERS:
                self.by_filter.popitem(last=False)


_CACHES = PerRegistry(_VectorCache)


def _cache_of(ctx: Context) -> _VectorCache:
    return _CACHES.of(ctx.session_factory)  # keyed on the session factory: one per registry


class ProvenanceTooBroad(InvalidInput):
    """More models hold evaluations of the provenance than one request re-embeds."""


class NoProvenanceEvaluations(InvalidInput):
    """A model the request names has no evaluation of the requested provenance."""


def restricting(flt: EvaluationFilter | None) -> EvaluationFilter | None:
    """The filter when it restricts anything, else None (an empty filter keeps every evaluation)."""
    return None if flt is None or flt.is_empty() else flt


@dataclass
class ProvenanceVectors:
    """Models embedded from only their evaluations of one provenance, in a fixed order (by id)."""

    flt: EvaluationFilter
    ids: list[uuid.UUID]
    vectors: np.ndarray  # (N, E), rows in `ids` order
    counts: dict[uuid.UUID, int]  # evaluations of this provenance behind each vector
    pool: list[uuid.UUID]  # the ids that matched the model filter (`must` ids may lie outside it)
    left_out: int = 0
    unrestricted: list[str] = field(default_factory=list)

    def vector(self, model_id: uuid.UUID) -> np.ndarray:
        out: np.ndarray = self.vectors[self.ids.index(model_id)]
        return out

    def as_dict(self) -> dict[uuid.UUID, np.ndarray]:
        return dict(zip(self.ids, self.vectors, strict=True))

    def nearest(
        self, vector: np.ndarray, k: int, exclude: Sequence[uuid.UUID] = (), among: Sequence[uuid.UUID] = ()
    ) -> list[ScoredId]:
        """The k pool models (or those of `among`) nearest to `vector` by Euclidean distance."""
        at = {m: i for i, m in enumerate(self.ids)}
        cand = [m for m in (among or self.pool) if m in at and m not in set(exclude)]
        if not cand or k < 1:
            return []
        d = np.linalg.norm(self.vectors[[at[m] for m in cand]] - vector[None, :], axis=1)  # (C,)
        order = np.lexsort((np.arange(len(cand)), d))[:k]  # ties: pool order, so answers are stable
        return [ScoredId(id=cand[i], distance=float(d[i])) for i in order]

    def used(self, unrestricted: Sequence[str] = ()) -> ProvenanceUsed:
        return ProvenanceUsed(
            filter=self.flt,
            models=len(self.ids),
            left_out=self.left_out,
            evaluations=sum(self.counts.values()),
            unrestricted=[*self.unrestricted, *unrestricted],
        )


def provenance_vectors(
    ctx: Context,
    flt: EvaluationFilter,
    model_flt: ModelFilter | None = None,
    *,
    must: Sequence[uuid.UUID] = (),
    pool: bool = True,
    cached: bool = True,
) -> ProvenanceVectors:
    """Embed, from only their evaluations of `flt`, the models matching `model_flt` that hold any
    (`pool=False`: none of them) plus the `must` ids; a `must` id without such evaluations raises
    NoProvenanceEvaluations naming it, more than MAX_MODELS models ProvenanceTooBroad. `cached=False`:
    embed everything again (what the cache must answer exactly like)."""
    cache = _cache_of(ctx)
    key = (ctx.embedder.fingerprint, flt.model_dump_json())
    with ctx.session_factory() as s:
        version = repo.registry_version(s)
        counts, left_out = repo.models_with_evaluations(s, flt, model_flt) if pool else ({}, 0)
        pool_ids = sorted(counts)
        if must:
            own, _ = repo.models_with_evaluations(s, flt, ModelFilter(include_ids=tuple(must)))
            lacking = [str(m) for m in must if m not in own]
            if lacking:
                raise NoProvenanceEvaluations(
                    f"model(s) {', '.join(lacking[:10])} have no evaluations of this provenance "
                    f"({describe(flt)}): widen the filter or leave them out"
                )
            counts.update(own)
        ids = sorted(counts)
        if len(ids) > MAX_MODELS:
            raise ProvenanceTooBroad(
                f"{len(ids)} models hold evaluations of this provenance ({describe(flt)}); a request "
                f"re-embeds at most {MAX_MODELS}: narrow the provenance or the model filters"
            )
        known = cache.get(version, key) if cached else {}
        todo = [m for m in ids if m not in known or known[m][1] != counts[m]]
        scores = repo.model_scores(s, todo, flt) if todo else {}
        phi, _ = question_phi(ctx, s, sorted({q for pairs in scores.values() for q, _ in pairs}))
    new: dict[uuid.UUID, tuple[np.ndarray, int]] = {}
    for m in todo:
        pairs = scores[m]
        x = np.stack([phi[q] for q, _ in pairs]).astype(np.float32)  # (n, query_dim)
        y = np.asarray([sc for _, sc in pairs], dtype=np.float32)  # (n,)
        # One set per call, as for stored vectors: a vector must not depend on the other sets.
        new[m] = (np.asarray(ctx.embedder.embed([(x, y)])[0], dtype=np.float32), len(pairs))
    cache.put(version, key, new)
    known.update(new)
    vectors = np.zeros((len(ids), ctx.embedder.embedding_dim), dtype=np.float32)  # (N, E)
    for i, m in enumerate(ids):
        vectors[i] = known[m][0]
    return ProvenanceVectors(
        flt=flt,
        ids=ids,
        vectors=vectors,
        counts={m: known[m][1] for m in ids},
        pool=pool_ids,
        left_out=left_out,
    )


def describe(flt: EvaluationFilter) -> str:
    """The filter in one line, for messages."""
    parts = [f"{k}={v}" for k, v in flt.model_dump(exclude_defaults=True, mode="json").items()]
    return ", ".join(parts) or "any provenance"


def embed_model_with_provenance(
    ctx: Context, model_id: uuid.UUID, flt: EvaluationFilter
) -> ProvenanceEmbeddingRead:
    """The model's embedding from only its scores that match `flt` (same canonical order as stored
    vectors, so with a filter that keeps every score it equals the model's vector)."""
    with ctx.session_factory() as s:
        if not repo.model_exists(s, model_id):
            raise NotFound(f"model {model_id} does not exist")
    pv = provenance_vectors(ctx, flt, must=[model_id], pool=False)
    return ProvenanceEmbeddingRead(
        model_id=model_id,
        fingerprint=ctx.embedder.fingerprint,
        n_evaluations=pv.counts[model_id],
        vector=[float(v) for v in pv.vector(model_id)],
    )


def similar_with_provenance(
    ctx: Context,
    model_id: uuid.UUID,
    k: int,
    flt: ModelFilter,
    rank_by: str,
    provenance: EvaluationFilter,
) -> SimilarRead:
    """`similar_models` on evaluations of one provenance: every model re-embedded from those only, the
    nearest found among them (not by the index's stored vectors), the behaviour re-rank on their
    shared questions of that provenance."""
    pv = provenance_vectors(ctx, provenance, flt, must=[model_id])
    n = k if rank_by == "embedding" else max(3 * k, 30)
    hits = pv.nearest(pv.vector(model_id), n, exclude=[model_id])
    with ctx.session_factory() as s:
        rows = repo.get_models(s, [h.id for h in hits])
        items = [SimilarModel(model=to_model_read(rows[h.id]), distance=h.distance) for h in hits]
    if rank_by == "embedding":
        return SimilarRead(
            model_id=model_id, fingerprint=ctx.embedder.fingerprint, items=items, provenance=pv.used()
        )
    items, n_ref = similarity.rerank(ctx, model_id, items, k, scores_filter=provenance, vectors=pv.as_dict())
    return SimilarRead(
        model_id=model_id,
        fingerprint=ctx.embedder.fingerprint,
        items=items,
        ranked_by="behaviour",
        reference_questions=n_ref,
        prior_questions=similarity.PRIOR_QUESTIONS,
        provenance=pv.used(),
    )
