"""Fill this process's `similar` caches for every embedded model, once, at start.

A fresh process answers `similar` from SQL until its caches hold the models asked about: each model's
scores, reference questions (with their encodings) and item-response profile, the question totals, the
stored embeddings and the model records (`registry.services.behaviour_cache`, `common.RecordCache`).
At 10,000 models that cold period lasted the whole of the load benchmark's `similar` phase: 22.7 ms of
CPU per request and a p99 of 553 ms without the warm-up, 9.4 ms and 125 ms with it (at 1,000 models the
phase's own first requests fill the caches within a second, and the two measure alike). `warm_caches`
reads all of it in chunks of `CHUNK` models (13-17 s at 10,000 on the shared 2-core machine), so that
a replica behind a readiness probe (`/readyz` answers 503 until it is done) takes traffic warm.

What it fills is exactly what requests would have filled, under the same key (encoder fingerprint and
registry version): a write meanwhile moves the caches to the new key as it would between requests, and
answers are the same with or without the warm-up (`tests/registry/test_warmup.py`). Each model's ranked
answer and its predicted-profile distances depend on its vector-search candidates and are left to the
first request about it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from registry import repositories as repo
from registry.services.behaviour_cache import cache_of, cached_vectors
from registry.services.common import record_cache
from registry.services.context import Context
from registry.services.similarity import _current, _evidence_cached

CHUNK = 64  # models whose scores are read in one statement


@dataclass(frozen=True)
class WarmupReport:
    models: int  # models whose entries were read
    seconds: float
    stopped: bool  # `stop` was set before every model was read


def warm_caches(
    ctx: Context,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WarmupReport:
    """Read every embedded model's `similar` inputs into this process's caches (at most the behaviour
    cache's `max_models`, in id order); `stop` ends it between chunks, `progress(done, total)` is called
    after each."""
    started = time.perf_counter()
    cache = cache_of(ctx)
    with ctx.session_factory() as s:
        fingerprint = ctx.embedder.fingerprint
        ids = sorted(m for m, (fp, n, _) in repo.embedding_states(s).items() if fp == fingerprint and n > 0)
    ids = ids[: cache.max_models]
    done = 0
    for start in range(0, len(ids), CHUNK):
        if stop is not None and stop.is_set():
            return WarmupReport(done, time.perf_counter() - started, True)
        chunk = ids[start : start + CHUNK]
        _warm_chunk(ctx, chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, len(ids))
    return WarmupReport(done, time.perf_counter() - started, False)


def _warm_chunk(ctx: Context, chunk: list[uuid.UUID]) -> None:
    """As a request does: bring the caches to the registry's current key, then read. The first model's
    call reads the chunk's scores in one statement and fits every profile; each other model's call then
    reads only its reference questions' encodings."""
    with ctx.session_factory() as s:
        scores_version, metadata_version = repo.versions(s)
        _current(ctx, s, scores_version)
        record_cache(ctx).reader(s, metadata_version)(chunk)
    for i, model_id in enumerate(chunk):
        _evidence_cached(ctx, model_id, chunk[1:] if i == 0 else [])
    cached_vectors(ctx, chunk)
