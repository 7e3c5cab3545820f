"""`similar`'s per-process cache of behaviour inputs (see `registry.services.similarity`): per model its
scores, reference questions, embedding and fitted item-response profile, and the score totals of the
questions in play, and its predicted-profile distances to its candidates, for one key (encoder
fingerprint and registry version).

When the registry version changes (any write), what depends on every model's scores is dropped (question
totals, fitted profiles, the reference questions' difficulties), and a model's own scores, reference
questions, embedding and profile distances (those to candidates whose state is unchanged too) are kept
if its embedding state (`repositories.embedding_states`: every write
that changes a model's scores re-embeds it) is the one they were read under. A registration every few
hundred ms then costs the next requests the totals and the fits, not every model's scores again.

After a write, one request at a time (`refresh_lock`) reads the embedding states and the question totals,
the latter for the questions in play before the write as well as its own, so the requests that arrive
together after a write wait for one read instead of each making the same one."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from registry import repositories as repo
from registry.services import response
from registry.services.common import PerRegistry
from registry.services.context import Context


@dataclass
class Reference:
    """A model's evidence questions (a seeded sample of its own, sorted by id), its scores on them, and
    the reference questions of its profile with their encodings."""

    qids: list[uuid.UUID]
    scores: np.ndarray  # (len(qids),) float64: the model's own score on each
    ref: list[uuid.UUID]
    phi: np.ndarray  # (len(ref), query_dim)
    qidx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # cache question numbers
    items: response.ReferenceItems | None = None  # difficulties and groups of `qids`, once per version
    items_generation: int = -1  # the cache generation `items` were computed in (stale in any other)


@dataclass
class Scores:
    """A model's scores as arrays: cache question numbers (ascending) and the scores in that order, and
    the same in question-id order (`uidx`, `uscores`: the order SQL returns, which fits sum in)."""

    qidx: np.ndarray  # (n,) int64
    scores: np.ndarray  # (n,) float64
    uidx: np.ndarray  # (n,) int64
    uscores: np.ndarray  # (n,) float64


PREFETCH_QUESTIONS = 4096  # at most this many questions of the previous key are read again with the first


@dataclass
class BehaviourCache:
    """One process's cached behaviour inputs for one registry: per model its scores and reference,
    valid for one `key` (fingerprint and registry version); least recently used models are dropped
    beyond `max_models`. Question ids are numbered once per key so that lookups are array work."""

    max_models: int = 20_000
    key: tuple[object, ...] | None = None
    generation: int = 0
    # Each model's embedding state when this key was set: what its kept entries were read under.
    states: dict[uuid.UUID, tuple[str, int, str]] = field(default_factory=dict)
    # Questions whose totals were cached under the previous key: read again with the first totals read.
    previous: list[uuid.UUID] = field(default_factory=list)
    qindex: dict[uuid.UUID, int] = field(default_factory=dict)
    qlist: list[uuid.UUID] = field(default_factory=list)  # question id of each cache question number
    items: dict[uuid.UUID, tuple[float, int, str | None, str | None]] = field(default_factory=dict)
    responses: OrderedDict[uuid.UUID, response.FittedResponse] = field(default_factory=OrderedDict)
    scores: OrderedDict[uuid.UUID, Scores] = field(default_factory=OrderedDict)
    refs: OrderedDict[uuid.UUID, Reference] = field(default_factory=OrderedDict)
    vectors: OrderedDict[uuid.UUID, np.ndarray] = field(default_factory=OrderedDict)
    # Per model: the ids (itself first, then its candidates) its predicted-profile distances were computed
    # for in one batch, and those distances; and per candidate, the models whose entry includes it.
    profiles: OrderedDict[uuid.UUID, tuple[tuple[uuid.UUID, ...], dict[uuid.UUID, float]]] = field(
        default_factory=OrderedDict
    )
    profiled_in: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    # Ranked answers of this generation, per (model, candidates with their distances, k): a request
    # repeated before the next write is answered from here (`similarity._rank`).
    ranked: dict[tuple[object, ...], tuple[list[tuple[uuid.UUID, float, dict[str, Any]]], int]] = field(
        default_factory=dict
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)  # taken before `lock`, never inside

    def reset(self, key: tuple[object, ...], states: dict[uuid.UUID, tuple[str, int, str]]) -> None:
        """Move to a new key: keep each model's own entries whose embedding state is unchanged (same
        storage and encoder: the key's first two parts), drop everything else."""
        same_encoder = self.key is not None and self.key[:2] == key[:2]
        self.key = key
        self.generation += 1
        self.previous = list(itertools.islice(self.items, PREFETCH_QUESTIONS))
        self.items.clear()
        self.ranked.clear()
        self.responses.clear()
        if not same_encoder:
            self.qindex.clear()
            self.qlist.clear()
            self.scores.clear()
            self.refs.clear()
            self.vectors.clear()
            self.profiles.clear()
            self.profiled_in.clear()
        else:  # a kept reference's `items` belong to the old generation (`items_generation`)
            old = self.states
            changed = {m for m, st in states.items() if old.get(m) != st}
            changed.update(m for m in old if m not in states)
            for store in (self.scores, self.refs, self.vectors, self.profiles):
                for m in changed:
                    store.pop(m, None)
            for m in changed:  # a changed candidate's vector: the profiles computed with it go too
                for owner in self.profiled_in.pop(m, ()):
                    self.profiles.pop(owner, None)
        self.states = states

    def store(self, model_id: uuid.UUID, pairs: list[tuple[uuid.UUID, float]]) -> Scores:
        idx = np.empty(len(pairs), np.int64)
        for i, (q, _) in enumerate(pairs):
            j = self.qindex.get(q)
            if j is None:
                j = self.qindex[q] = len(self.qlist)
                self.qlist.append(q)
            idx[i] = j
        vals = np.fromiter((y for _, y in pairs), np.float64, len(pairs))
        order = np.argsort(idx, kind="stable")
        entry = self.scores[model_id] = Scores(idx[order], vals[order], idx, vals)
        return entry

    def profile(self, ids: tuple[uuid.UUID, ...]) -> dict[uuid.UUID, float] | None:
        """The cached profile distances of `ids[0]` to the others, if computed for exactly these ids."""
        entry = self.profiles.get(ids[0])
        return entry[1] if entry is not None and entry[0] == ids else None

    def store_profile(self, ids: tuple[uuid.UUID, ...], distances: dict[uuid.UUID, float]) -> None:
        self.profiles[ids[0]] = (ids, distances)
        for m in ids:
            self.profiled_in.setdefault(m, set()).add(ids[0])

    def remember(
        self, key: tuple[object, ...], answer: tuple[list[tuple[uuid.UUID, float, dict[str, Any]]], int]
    ) -> None:
        if len(self.ranked) >= self.max_models:
            self.ranked.clear()
        self.ranked[key] = answer

    def touch(self, ids: list[uuid.UUID]) -> None:
        for store in (self.scores, self.refs, self.vectors, self.responses, self.profiles):
            for m in ids:
                if m in store:
                    store.move_to_end(m)
            while len(store) > self.max_models:
                store.popitem(last=False)


_CACHES = PerRegistry(BehaviourCache)


def cache_of(ctx: Context) -> BehaviourCache:
    """This registry's behaviour cache in this process (keyed on its vector index: one per container)."""
    return _CACHES.of(ctx.index)


def question_totals(
    ctx: Context, cache: BehaviourCache, generation: int, need: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[float, int, str | None, str | None]]:
    """Totals of these questions: from what another request read meanwhile, else one read that also
    covers the questions in play before the last write (one request at a time: see the cache doc)."""
    with cache.refresh_lock:
        with cache.lock:
            current = cache.generation == generation
            out = {q: st for q in need if (st := cache.items.get(q)) is not None}
            extra = [q for q in cache.previous if q not in cache.items] if current else []
        rest = [q for q in need if q not in out]
        if rest:
            with ctx.session_factory() as s:
                read = repo.question_score_totals(s, list(dict.fromkeys([*rest, *extra])))
            out.update({q: read[q] for q in rest if q in read})
            with cache.lock:
                if cache.generation == generation:
                    cache.items.update(read)
                    cache.previous = []
    return out


def cached_vectors(ctx: Context, ids: list[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
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
