"""Behaviour distance for `similar`: vector-search candidates re-ranked with the evidence the registry holds.

Three estimates of how differently two models answer, each as a disagreement rate:

- `response`: the item-response distance (`registry.services.response`, `registry.item_response`): each
  question's difficulty from every registered model's scores on it, each model's ability and
  per-category offsets from its own scores, compared on the model's evidence questions in the groups
  both were scored in. It needs no shared questions and no training, and tracks test-question
  disagreement best of the three on domains the encoder never saw (geometry benchmark, own random
  K=128 samples: zeroeval 0.93, lart 0.97 against |acc diff| 0.60 and 0.93);
- `profile`: the predictor's P(correct) of each model on reference questions (up to `REFERENCE` of the
  model's own questions, a fixed sample), compared by the mean absolute difference: what the embedding
  says, reported beside it and used where a candidate has no scores;
- `observed`: where both were scored on the same questions (the probe set makes that the normal case),
  their disagreement on them: direct evidence.

    behaviour_distance = (PRIOR * estimate + shared * observed) / (PRIOR + shared)

`estimate` is the response distance (the profile where a candidate has no scores). With nothing shared
it is the estimate; with a 128-question probe set it is essentially the observation (PRIOR = 4 keeps the
Pearson of the combination at that of the observation). Evidence is read on at most `MAX_EVIDENCE` of
the model's questions, so a request stays bounded.

Each model's scores, fitted response profile, reference-question encodings and predicted-profile
distances to its candidates, and the score totals of the questions in play, are cached per process
(`BehaviourCache`), keyed on the encoder fingerprint and `repositories.registry_version` (a counter in
SQL, bumped by every write that changes scores), so a request reads SQL only for what it has not seen
since the last write, and every worker answers alike. A ranked answer is kept until the next write too:
the same request (model, candidates, k) before it is answered without ranking again. The answer's model
records are cached per `repositories.metadata_version` (`common.RecordCache`). Requests restricted to a
provenance read SQL directly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter, SimilarModel
from registry.services import response
from registry.services.behaviour_cache import Reference, cache_of, cached_vectors, question_totals
from registry.services.common import question_phi, record_cache, registered_records, to_model_read
from registry.services.context import Context

T = TypeVar("T")

PRIOR_QUESTIONS = 4.0
REFERENCE = 128  # reference questions for the predicted profiles
ORPHAN_SLACK = 3  # `similar` computes profile distances for k + this many of its ranking (orphans skipped)
MAX_EVIDENCE = 512  # shared questions read per request: the rate's standard error is then <= 0.022


def _sample(ids: list[T], n: int, seed: int) -> list[T]:
    if len(ids) <= n:
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    return [ids[i] for i in np.sort(pick)]


def _evidence_sample(model_id: uuid.UUID, n: int) -> np.ndarray:
    """Positions (ascending) of the at most `MAX_EVIDENCE` of a model's n scores, in question-id order,
    that its item-response profile is fitted on: the same seeded draw as its evidence questions, so a
    model with thousands of scores costs a bounded fit and bounded question totals."""
    return np.asarray(_sample(list(range(n)), MAX_EVIDENCE, model_id.int % 2**32), dtype=np.int64)


def _reference(ctx: Context, s: Session, model_id: uuid.UUID, mine: dict[uuid.UUID, float]) -> Reference:
    """The model's reference from its scores (question id -> score, in question-id order)."""
    seed = model_id.int % 2**32
    qids = _sample(list(mine), MAX_EVIDENCE, seed)
    ref = _sample(qids, REFERENCE, seed + 1)
    phi, _ = question_phi(ctx, s, ref)
    mat = np.stack([phi[q] for q in ref]).astype(np.float32) if ref else np.zeros((0, ctx.embedder.query_dim))
    return Reference(qids, np.asarray([mine[q] for q in qids], np.float64), ref, mat)


@dataclass
class _Evidence:
    """What `_rank` compares: the model's reference (with its questions' difficulties and groups), each
    other model's scores on its evidence questions (NaN: not scored) and every model's item-response
    profile."""

    reference: Reference
    aligned: dict[uuid.UUID, np.ndarray]
    responses: dict[uuid.UUID, response.FittedResponse]
    items: response.ReferenceItems  # the reference questions' difficulties and groups, this version
    generation: int | None = None  # the behaviour cache's generation it was read in (None: from SQL)


def _evidence_uncached(
    ctx: Context, model_id: uuid.UUID, others: list[uuid.UUID], flt: EvaluationFilter | None
) -> _Evidence:
    """`_Evidence` read from SQL: every model's scores (of that provenance) in one read."""
    with ctx.session_factory() as s:
        every = repo.model_scores(s, [model_id, *others], flt)  # pairs sorted by question id
        mine = dict(every.get(model_id, []))
        reference = _reference(ctx, s, model_id, mine)
        own = {m: [pairs[i] for i in _evidence_sample(m, len(pairs))] for m, pairs in every.items()}
        stats = repo.question_score_totals(
            s, list({*reference.qids, *(q for pairs in own.values() for q, _ in pairs)})
        )
    theirs = {m: dict(pairs) for m, pairs in every.items()}
    aligned = {
        m: np.asarray([theirs.get(m, {}).get(q, np.nan) for q in reference.qids], np.float64) for m in others
    }
    responses = {
        m: response.fit([q for q, _ in pairs], np.array([y for _, y in pairs], np.float64), stats)
        for m, pairs in own.items()
    }
    return _Evidence(reference, aligned, responses, response.reference_items(reference.qids, stats))


def _current(ctx: Context, s: Session, version: object = None) -> int:
    """Bring the behaviour cache to the registry's current key and return its generation: after a write,
    one request reads the embedding states and resets it while the others wait for that reset.
    `version`: `repositories.registry_version`, read here when not given."""
    cache = cache_of(ctx)
    version = repo.registry_version(s) if version is None else version
    key = (id(ctx.session_factory), ctx.embedder.fingerprint, version)
    with cache.lock:
        if cache.key == key:
            return cache.generation
    with cache.refresh_lock:
        with cache.lock:
            current = cache.key == key
        if not current:
            states = repo.embedding_states(s)  # read before any entry of the new key
            with cache.lock:
                if cache.key != key:
                    cache.reset(key, states)
    with cache.lock:
        return cache.generation


def _evidence_cached(ctx: Context, model_id: uuid.UUID, others: list[uuid.UUID]) -> _Evidence:
    """As `_evidence_uncached`, from the cache (brought to the current key by `_current`): SQL reads only
    the models and question totals missing from it."""
    cache = cache_of(ctx)
    ids = list(dict.fromkeys([model_id, *others]))
    with cache.lock:
        generation = cache.generation
        missing = [m for m in ids if m not in cache.scores]
        reference = cache.refs.get(model_id)
        held = cache.scores.get(model_id) if reference is None else None
        own = (
            None
            if held is None
            else [(cache.qlist[i], float(y)) for i, y in zip(held.uidx, held.uscores, strict=True)]
        )
    with ctx.session_factory() as s:
        got = repo.model_scores(s, missing) if missing else {}  # read outside the lock
        if reference is None:
            if own is None:
                own = got.get(model_id, [])
            reference = _reference(ctx, s, model_id, dict(own))  # in question-id order
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
            fitted = {m: r for m in ids if (r := cache.responses.get(m)) is not None}
            to_fit = {}
            for m in ids:
                if len(entries[m].uidx) and m not in fitted:  # no scores: no profile (as uncached)
                    pos = _evidence_sample(m, len(entries[m].uidx))
                    to_fit[m] = ([cache.qlist[i] for i in entries[m].uidx[pos]], entries[m].uscores[pos])
            want = {q for qs, _ in to_fit.values() for q in qs}
            # the reference's totals: once per model and version (a kept reference's are from the last)
            items = reference.items if reference.items_generation == generation else None
            if items is None:
                want.update(reference.qids)
            stats = {q: st for q in want if (st := cache.items.get(q)) is not None}
    if stale:
        return _evidence_uncached(ctx, model_id, others, None)
    if len(stats) < len(want):
        stats.update(question_totals(ctx, cache, generation, [q for q in want if q not in stats]))
    for m, (qs, ys) in to_fit.items():
        fitted[m] = response.fit(qs, ys, stats)
    if items is None:  # this request's own copy: a request of another generation may share `reference`
        items = response.reference_items(reference.qids, stats)
    with cache.lock:
        if cache.generation != generation:
            return _evidence_uncached(ctx, model_id, others, None)
        reference.items, reference.items_generation = items, generation
        cache.items.update(stats)
        for m in to_fit:
            cache.responses[m] = fitted[m]
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
    return _Evidence(reference, aligned, fitted, items, generation)


def _profile_cached(ctx: Context, ids: tuple[uuid.UUID, ...], ev: _Evidence) -> dict[uuid.UUID, float] | None:
    """The profile distances of `ids[0]` to the others from the cache, when they were computed for exactly
    these ids (one batch: the same floats as computing them again) under the evidence's generation."""
    if ev.generation is None:
        return None
    cache = cache_of(ctx)
    with cache.lock:
        return cache.profile(ids) if cache.generation == ev.generation else None


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
    """`similar` ranked by behaviour: the max(3k, 30) nearest by vector search, re-ranked as `rerank`
    does, the k best that are registered (orphan vectors skipped). Only the model and the k best are read
    from SQL (a candidate's place does not depend on the others, so skipping an orphan after ranking
    gives the same answer as before); NotFound if the model itself is not registered."""
    with ctx.session_factory() as s:
        scores_version, metadata_version = repo.versions(s)  # one read keys both caches
    hits = ctx.index.search_models(vector, max(3 * k, 30), flt)
    cands = [(h.id, h.distance) for h in hits]
    answered = k + ORPHAN_SLACK
    ranked, n_ref = _rank(ctx, model_id, cands, len(hits), version=scores_version, answered=answered)
    with ctx.session_factory() as s:
        rows, chosen = registered_records(
            s, model_id, [m for m, _, _ in ranked], k, record_cache(ctx).reader(s, metadata_version)
        )
    place = {m: i for i, (m, _, _) in enumerate(ranked)}
    deepest = max((place[m] for m in chosen), default=-1)
    if deepest >= answered:  # more orphan vectors than the slack ahead of an answer: the same ranking again
        ranked, n_ref = _rank(ctx, model_id, cands, len(hits), version=scores_version, answered=deepest + 1)
    by_id = {m: (d, evidence) for m, d, evidence in ranked}
    items = [SimilarModel(model=to_model_read(rows[m]), distance=by_id[m][0], **by_id[m][1]) for m in chosen]
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
    version: object = None,
    answered: int | None = None,
) -> tuple[list[tuple[uuid.UUID, float, dict[str, Any]]], int]:
    """The k (candidate id, embedding distance, evidence fields) nearest by behaviour distance, ties by
    embedding distance then candidate order, and the number of reference questions. `version`: the
    registry version the caller read (read here when not given); `answered`: how many of the first carry
    their profile distance (the others only where it ranked them), computed in one batch. The default,
    k + ORPHAN_SLACK, is what `similar` asks for, so that every path computes a pair's profile distance in
    the same batch: float32 sums differ in their last bits with the batch's size."""
    others = [m for m, _ in candidates]
    memo: tuple[object, ...] | None = None
    if scores_filter is None and cached:
        cache = cache_of(ctx)
        with ctx.session_factory() as s:
            generation = _current(ctx, s, version)
        if vectors is None:  # answers from the stored embeddings: the same request, the same answer
            memo = (model_id, tuple(candidates), k, answered)
            with cache.lock:
                hit = cache.ranked.get(memo) if cache.generation == generation else None
            if hit is not None:
                return list(hit[0]), hit[1]
        ev = _evidence_cached(ctx, model_id, others)
    else:
        ev = _evidence_uncached(ctx, model_id, others, scores_filter)
    reference, scores = ev.reference, ev.aligned
    ref = reference.ref
    resp: dict[uuid.UUID, float] = {}
    mine = ev.responses.get(model_id)
    scored = [m for m in others if m in ev.responses]
    if mine is not None and scored:
        got = response.distances(mine, [ev.responses[m] for m in scored], ev.items)
        resp = {m: float(d) for m, d in zip(scored, got, strict=True) if np.isfinite(d)}
    fetched: dict[uuid.UUID, np.ndarray] | None = vectors

    def profiles(ids: tuple[uuid.UUID, ...]) -> dict[uuid.UUID, float]:
        """The predictor's profile distances of the model to these candidates, in one batch (so the same
        floats whichever path asks), from the cache when computed for exactly these ids."""
        nonlocal fetched
        if len(ids) < 2 or not ref:
            return {}
        hit = _profile_cached(ctx, ids, ev) if vectors is None else None
        if hit is not None:
            return hit
        if fetched is None:
            everyone = [model_id, *others]
            if scores_filter is None and cached:
                fetched = cached_vectors(ctx, everyone)
            else:
                fetched = ctx.index.get_model_vectors(everyone)
        got: dict[uuid.UUID, float] = {}
        if model_id in fetched:
            have = [m for m in ids if m in fetched]
            z = np.stack([fetched[m] for m in have]).astype(np.float32)  # (M, E)
            p = ctx.embedder.predict(z, reference.phi)  # (Q, M)
            diff = np.abs(p - p[:, [0]]).mean(axis=0)  # (M,): row 0 is the model itself
            got = {m: float(d) for m, d in zip(have, diff, strict=True)}
        if ev.generation is not None and vectors is None:
            cache = cache_of(ctx)
            with cache.lock:
                if cache.generation == ev.generation:
                    cache.store_profile(ids, got)
        return got

    # The profile ranks only candidates without an item-response distance (no scores: rare), and is
    # reported for the first `answered` of the ranking, computed once it is known (the predictor over
    # every candidate was the largest single part of a model's first `similar`).
    profile = profiles((model_id, *[m for m in others if m not in resp]))
    out: list[tuple[uuid.UUID, float, dict[str, Any]]] = []
    for m, distance in candidates:
        theirs = scores[m]
        shared = ~np.isnan(theirs)
        n = int(shared.sum())
        # Summed in the model's question order, so cached and uncached answers agree to the last bit.
        observed = float(np.mean(np.abs(reference.scores[shared] - theirs[shared]))) if n else None
        prof = profile.get(m)
        prior = resp.get(m, prof)  # the item-response distance where both have scores, else the profile
        combined = None
        if prior is not None or observed is not None:
            w = PRIOR_QUESTIONS if prior is not None else 0.0
            combined = (w * (prior or 0.0) + n * (observed or 0.0)) / (w + n)
        evidence = {
            "shared_questions": n,
            "observed_disagreement": observed,
            "profile_distance": prof,
            "response_distance": resp.get(m),
            "behaviour_distance": combined,
        }
        out.append((m, distance, evidence))
    out.sort(
        key=lambda r: (np.inf if r[2]["behaviour_distance"] is None else r[2]["behaviour_distance"], r[1])
    )
    first = out[: k + ORPHAN_SLACK if answered is None else answered]
    shown = profiles((model_id, *[m for m, _, e in first if e["profile_distance"] is None]))
    for m, _, e in first:
        if e["profile_distance"] is None:
            e["profile_distance"] = shown.get(m)
    if memo is not None and ev.generation is not None:
        cache = cache_of(ctx)
        with cache.lock:
            if cache.generation == ev.generation:
                cache.remember(memo, (out[:k], len(ref)))
    return out[:k], len(ref)
