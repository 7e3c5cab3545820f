"""The start-up warm-up fills `similar`'s caches with what requests would have read, and changes no answer."""

from __future__ import annotations

import threading

from registry import services
from registry.schemas import EvaluationIn, ModelCreate
from registry.services import Context, behaviour_cache, common
from registry.services.warmup import warm_caches
from tests.registry.test_similar_cache import register


def _cold() -> None:
    behaviour_cache._CACHES.clear()
    common._RECORDS.clear()


def test_warm_up_reads_every_model_and_answers_as_a_cold_process(ctx: Context) -> None:
    ids = register(ctx, n_models=9)
    _cold()
    cold = [services.similar_models(ctx, m, k=4) for m in ids]
    _cold()
    seen: list[tuple[int, int]] = []
    report = warm_caches(ctx, progress=lambda done, total: seen.append((done, total)))
    assert (report.models, report.stopped) == (9, False)
    assert seen[-1] == (9, 9)
    cache = behaviour_cache.cache_of(ctx)
    assert set(ids) <= set(cache.scores) and set(ids) <= set(cache.refs)
    assert set(ids) <= set(cache.responses) and set(ids) <= set(cache.vectors)
    assert not cache.ranked  # answers are left to requests
    assert [services.similar_models(ctx, m, k=4) for m in ids] == cold


def test_a_write_after_the_warm_up_shows_in_the_next_answer(ctx: Context) -> None:
    ids = register(ctx, n_models=6)
    _cold()
    warm_caches(ctx)
    evals = [EvaluationIn(question=f"q{i}", score=float(i % 2)) for i in range(30)]
    services.add_evaluations(ctx, ids[0], evals)
    got = services.similar_models(ctx, ids[1], k=5)
    _cold()
    assert services.similar_models(ctx, ids[1], k=5) == got


def test_stop_ends_the_warm_up_between_chunks(ctx: Context) -> None:
    register(ctx, n_models=3)
    _cold()
    stop = threading.Event()
    stop.set()
    report = warm_caches(ctx, stop=stop)
    assert (report.models, report.stopped) == (0, True)
    assert not behaviour_cache.cache_of(ctx).scores


def test_an_empty_registry_warms_nothing(ctx: Context) -> None:
    services.register_model(ctx, ModelCreate(name="no scores"))
    report = warm_caches(ctx)
    assert (report.models, report.stopped) == (0, False)
