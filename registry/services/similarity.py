"""Behaviour distance for `similar`: vector-search candidates re-ranked with the evidence the registry holds.

Two estimates of how differently two models answer, both as a disagreement rate:

- `profile`: the predictor's P(correct) of each model on reference questions (up to `REFERENCE` of the
  model's own questions, a fixed sample), compared by the mean absolute difference. It needs no shared
  questions and tracks test-question disagreement better than the raw embedding distance (geometry
  benchmark, shipped checkpoint, K=128: lart 0.92 vs 0.78, alpaca_eval_v2 0.98 vs 0.91, zeroeval
  0.80 vs 0.75);
- `observed`: where both were scored on the same questions (the probe set makes that the normal case),
  their disagreement on them: direct evidence.

    behaviour_distance = (PRIOR * profile + shared * observed) / (PRIOR + shared)

With nothing shared it is the profile; with a 128-question probe set it is essentially the
observation (PRIOR = 4 keeps the Pearson of the combination at that of the observation: 0.973 and
0.988 on lart and alpaca_eval_v2, where 64 lost 0.01-0.03). Evidence is read on at most
`MAX_EVIDENCE` of the model's questions, so a request stays bounded.

Each model's scores and its reference-question encodings are cached per process (`BehaviourCache`),
keyed on the encoder fingerprint and `repositories.registry_version` (state stored in SQL, changed by
every write that changes scores), so a request reads SQL only for models it has not seen since the last
write, and every worker answers alike. Requests restricted to a provenance read SQL directly.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter, SimilarModel
from registry.services.common import question_phi, to_model_read
from registry.services.context import Context

T = TypeVar("T")

PRIOR_QUESTIONS = 4.0
REFERENCE = 128  # reference questions for the predicted profiles
MAX_EVIDENCE = 512  # shared questions read per request: the rate's standard error is then <= 0.022


def _sample(ids: list[T], n: int, seed: int) -> list[T]:
    if len(ids) <= n:
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    return [ids[i] for i in np.sort(pick)]


@dataclass
class _Reference:
    """A model's evidence questions (a seeded sample of its own, sorted by id), its scores on them, and
    the reference questions of its profile with their encodings."""

    qids: list[uuid.UUID]
    scores: np.ndarray  # (len(qids),) float64: the model's own score on each
    ref: list[uuid.UUID]
    phi: np.ndarray  # (len(ref), query_dim)
    qidx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # cache question numbers


@dataclass
class _Scores:
    """A model's scores as arrays: cache question numbers (ascending) and the scores in that order."""

    qidx: np.ndarray  # (n,) int64
    scores: np.ndarray  # (n,) float64


@dataclass
class BehaviourCache:
    """One process's cached behaviour inputs for one registry: per model its scores and reference,
    valid for one `key` (fingerprint and registry version); least recently used models are dropped
    beyond `max_models`. Question ids are numbered once per key so that lookups are array work."""

    max_models: int = 20_000
    key: tuple[object, ...] | None = None
    generation: int = 0
    qindex: dict[uuid.UUID, int] = field(default_factory=dict)
    scores: OrderedDict[uuid.UUID, _Scores] = field(default_factory=OrderedDict)
    refs: OrderedDict[uuid.UUID, _Reference] = field(default_factory=OrderedDict)
    vectors: OrderedDict[uuid.UUID, np.ndarray] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, key: tuple[object, ...]) -> None:
        self.key = key
        self.generation += 1
        self.qindex.clear()
        self.scores.clear()
        self.refs.clear()
        self.vectors.clear()

    def store(self, model_id: uuid.UUID, pairs: list[tuple[uuid.UUID, float]]) -> _Scores:
        idx = np.fromiter(
            (self.qindex.setdefault(q, len(self.qindex)) for q, _ in pairs), np.int64, len(pairs)
        )
        vals = np.fromiter((y for _, y in pairs), np.float64, len(pairs))
        order = np.argsort(idx, kind="stable")
        entry = self.scores[model_id] = _Scores(idx[order], vals[order])
        return entry

    def touch(self, ids: list[uuid.UUID]) -> None:
        for store in (self.scores, self.refs, self.vectors):
            for m in ids:
                if m in store:
                    store.move_to_end(m)
            while len(store) > self.max_models:
                store.popitem(last=False)


# Keyed on the index object (one per container), so two registries in one process never share entries.
_CACHES: weakref.WeakKeyDictionary[object, BehaviourCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_of(ctx: Context) -> BehaviourCache:
    """This registry's behaviour cache in this process."""
    with _CACHES_LOCK:
        cache = _CACHES.get(ctx.index)
        if cache is None:
            cache = _CACHES[ctx.index] = BehaviourCache()
        return cache


def _reference(
    ctx: Context,
    s: Session,
    model_id: uuid.UUID,
    own: list[uuid.UUID],
    scores_on: Callable[[list[uuid.UUID]], dict[uuid.UUID, float]],
) -> _Reference:
    """The model's reference from the ids of its questions (sorted) and a reader of its scores."""
    seed = model_id.int % 2**32
    qids = _sample(own, MAX_EVIDENCE, seed)
    mine = scores_on(qids)
    ref = _sample(qids, REFERENCE, seed + 1)
    phi, _ = question_phi(ctx, s, ref)
    mat = np.stack([phi[q] for q in ref]).astype(np.float32) if ref else np.zeros((0, ctx.embedder.query_dim))
    return _Reference(qids, np.asarray([mine[q] for q in qids], np.float64), ref, mat)


def _evidence_uncached(
    ctx: Context, model_id: uuid.UUID, others: list[uuid.UUID], flt: EvaluationFilter | None
) -> tuple[_Reference, dict[uuid.UUID, np.ndarray]]:
    """The model's reference and each other model's scores on its evidence questions (NaN: not scored),
    read from SQL."""
    with ctx.session_factory() as s:
        reference = _reference(
            ctx,
            s,
            model_id,
            repo.model_question_ids(s, model_id, flt),
            lambda qs: repo.model_scores_on(s, [model_id], qs, flt).get(model_id, {}),
        )
        got = repo.model_scores_on(s, others, reference.qids, flt)
    aligned = {
        m: np.asarray([got.get(m, {}).get(q, np.nan) for q in reference.qids], np.float64) for m in others
    }
    return reference, aligned


def _evidence_cached(
    ctx: Context, model_id: uuid.UUID, others: list[uuid.UUID]
) -> tuple[_Reference, dict[uuid.UUID, np.ndarray]]:
    """As `_evidence_uncached`, from the cache: SQL reads only the models missing from it."""
    cache = cache_of(ctx)
    ids = list(dict.fromkeys([model_id, *others]))
    with ctx.session_factory() as s:
        key = (id(ctx.session_factory), ctx.embedder.fingerprint, repo.registry_version(s))
        with cache.lock:
            if cache.key != key:
                cache.reset(key)
            generation = cache.generation
            missing = [m for m in ids if m not in cache.scores]
            reference = cache.refs.get(model_id)
        got = repo.model_scores(s, missing) if missing else {}  # read outside the lock
        if reference is None:
            own = got.get(model_id) if model_id in missing else repo.model_scores(s, [model_id]).get(model_id)
            pairs = dict(own or [])  # sorted by question id, as model_question_ids
            reference = _reference(ctx, s, model_id, list(pairs), lambda _: pairs)
    with cache.lock:
        if cache.generation != generation:  # a write landed meanwhile (rare): read it all from SQL
            stale = True
        else:
            stale = False
            for m in missing:
                cache.store(m, got.get(m, []))
            entries = {m: cache.scores[m] for m in ids}
            if len(reference.qidx) != len(reference.qids):
                reference.qidx = np.asarray([cache.qindex[q] for q in reference.qids], np.int64)
            cache.refs[model_id] = reference
            cache.touch(ids)
    if stale:
        return _evidence_uncached(ctx, model_id, others, None)
    qidx = reference.qidx
    order = np.argsort(qidx)
    sorted_q = qidx[order]
    aligned: dict[uuid.UUID, np.ndarray] = {}
    for m in others:
        e = entries.get(m)
        row = np.full(len(qidx), np.nan)
        if e is not None and len(e.qidx) and len(qidx):
            loc = np.searchsorted(sorted_q, e.qidx).clip(max=len(sorted_q) - 1)
            hit = sorted_q[loc] == e.qidx
            row[order[loc[hit]]] = e.scores[hit]
        aligned[m] = row
    return reference, aligned


def _vectors_cached(ctx: Context, ids: list[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
    """The models' stored embeddings, cached under the same key as the scores (an embedding only changes
    with its model's embedding state, which changes the registry version)."""
    cache = cache_of(ctx)
    with cache.lock:
        generation = cache.generation
        have = {m: v for m in ids if (v := cache.vectors.get(m)) is not None}
    missing = [m for m in ids if m not in have]
    if missing:
        got = ctx.index.get_model_vectors(missing)
        have.update(got)
        with cache.lock:
            if cache.generation == generation:
                cache.vectors.update(got)
                cache.touch(list(got))
    return have


def rerank(
    ctx: Context,
    model_id: uuid.UUID,
    items: list[SimilarModel],
    k: int,
    *,
    scores_filter: EvaluationFilter | None = None,
    vectors: dict[uuid.UUID, np.ndarray] | None = None,
    cached: bool = True,
) -> tuple[list[SimilarModel], int]:
    """The k candidates nearest by behaviour distance (see the module doc), with their evidence, and
    the number of reference questions the profiles were compared on.

    `scores_filter`: read only scores of that provenance; `vectors`: embeddings to predict the
    profiles from instead of the stored ones (`registry.services.provenance`); `cached=False`: read
    everything from SQL (what the cache must answer exactly like)."""
    by_id = {it.model.id: it for it in items}
    ranked, n_ref = _rank(
        ctx,
        model_id,
        [(it.model.id, it.distance) for it in items],
        k,
        scores_filter=scores_filter,
        vectors=vectors,
        cached=cached,
    )
    return [by_id[m].model_copy(update=evidence) for m, _, evidence in ranked], n_ref


def nearest_by_behaviour(
    ctx: Context, model_id: uuid.UUID, vector: np.ndarray, k: int, flt: ModelFilter
) -> tuple[list[SimilarModel], int]:
    """`similar` ranked by behaviour: the max(3k, 30) nearest by vector search that are registered
    (orphan vectors skipped), re-ranked as `rerank` does; rows are read only for the k returned."""
    hits = ctx.index.search_models(vector, max(3 * k, 30), flt)
    with ctx.session_factory() as s:
        present = repo.existing_model_ids(s, [h.id for h in hits])
    ranked, n_ref = _rank(ctx, model_id, [(h.id, h.distance) for h in hits if h.id in present], k)
    with ctx.session_factory() as s:
        rows = repo.get_models(s, [m for m, _, _ in ranked])
        items = [
            SimilarModel(model=to_model_read(rows[m]), distance=d, **evidence)
            for m, d, evidence in ranked
            if m in rows  # deleted since the search: skipped, as an orphan vector is
        ]
    return items, n_ref


def rank_candidates(
    ctx: Context, model_id: uuid.UUID, candidates: list[tuple[uuid.UUID, float]], k: int
) -> tuple[list[tuple[uuid.UUID, float, dict[str, Any]]], int]:
    """The k of these (candidate id, embedding distance) nearest to the model by behaviour distance, with
    their evidence fields, and the number of reference questions (what `fallbacks` ranks by too)."""
    return _rank(ctx, model_id, candidates, k)


def _rank(
    ctx: Context,
    model_id: uuid.UUID,
    candidates: list[tuple[uuid.UUID, float]],
    k: int,
    *,
    scores_filter: EvaluationFilter | None = None,
    vectors: dict[uuid.UUID, np.ndarray] | None = None,
    cached: bool = True,
) -> tuple[list[tuple[uuid.UUID, float, dict[str, Any]]], int]:
    """The k (candidate id, embedding distance, evidence fields) nearest by behaviour distance, ties by
    embedding distance then candidate order, and the number of reference questions."""
    others = [m for m, _ in candidates]
    if scores_filter is None and cached:
        reference, scores = _evidence_cached(ctx, model_id, others)
    else:
        reference, scores = _evidence_uncached(ctx, model_id, others, scores_filter)
    ref = reference.ref
    ids = [model_id, *others]
    if vectors is None:
        vectors = (
            _vectors_cached(ctx, ids)
            if scores_filter is None and cached
            else ctx.index.get_model_vectors(ids)
        )
    profile: dict[uuid.UUID, float] = {}
    if ref and model_id in vectors:
        have = [m for m in ids if m in vectors]
        z = np.stack([vectors[m] for m in have]).astype(np.float32)  # (M, E)
        p = ctx.embedder.predict(z, reference.phi)  # (Q, M)
        diff = np.abs(p - p[:, [0]]).mean(axis=0)  # (M,): row 0 is the model itself
        profile = {m: float(d) for m, d in zip(have, diff, strict=True)}
    out: list[tuple[uuid.UUID, float, dict[str, Any]]] = []
    for m, distance in candidates:
        theirs = scores[m]
        shared = ~np.isnan(theirs)
        n = int(shared.sum())
        # Summed in the model's question order, so cached and uncached answers agree to the last bit.
        observed = float(np.mean(np.abs(reference.scores[shared] - theirs[shared]))) if n else None
        prof = profile.get(m)
        combined = None
        if prof is not None or observed is not None:
            w = PRIOR_QUESTIONS if prof is not None else 0.0
            combined = (w * (prof or 0.0) + n * (observed or 0.0)) / (w + n)
        evidence = {
            "shared_questions": n,
            "observed_disagreement": observed,
            "profile_distance": prof,
            "behaviour_distance": combined,
        }
        out.append((m, distance, evidence))
    out.sort(
        key=lambda r: (np.inf if r[2]["behaviour_distance"] is None else r[2]["behaviour_distance"], r[1])
    )
    return out[:k], len(ref)
