"""`/readyz` waits for the start-up cache warm-up, which runs beside requests and changes no answer."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry import services
from registry.decisions.service import pool as pool_cache
from registry.decisions.service.pool import pool_subset
from registry.services import Context, behaviour_cache, warmup
from tests.api.conftest import bearer, make_container
from tests.registry.test_similar_cache import register


def _ready(client: TestClient, timeout: float = 20.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/readyz")
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            body: dict[str, object] = r.json()
            return body
        time.sleep(0.02)


def test_readyz_answers_503_until_the_warm_up_is_done(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = register(ctx, n_models=5)
    gate = threading.Event()
    chunk = warmup._warm_chunk

    def held(*args: object) -> None:
        gate.wait(10)
        chunk(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(warmup, "_warm_chunk", held)
    behaviour_cache._CACHES.clear()
    key = bearer(services.create_api_key(ctx, "r", ["read"]).key)
    with TestClient(create_app(container=make_container(ctx, cache_warmup=True))) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["cache_warmup"] is False
        assert r.json()["cache_warmup"]["done"] is False
        # requests are served meanwhile, from SQL
        assert client.get(f"/v1/models/{ids[0]}/similar", params={"k": 3}, headers=key).status_code == 200
        gate.set()
        body = _ready(client)
        assert body["cache_warmup"] == {
            "enabled": True,
            "done": True,
            "models": 5,
            "total": 5,
            "seconds": body["cache_warmup"]["seconds"],  # type: ignore[index]
            "error": None,
        }
        assert set(ids) <= set(behaviour_cache.cache_of(ctx).scores)


def test_an_empty_registry_is_ready_at_once_with_nothing_to_warm(ctx: Context) -> None:
    with TestClient(create_app(container=make_container(ctx, cache_warmup=True))) as client:
        report = _ready(client)["cache_warmup"]
        assert {k: report[k] for k in ("done", "models", "total", "error")} == {  # type: ignore[index]
            "done": True,
            "models": 0,
            "total": 0,
            "error": None,
        }


def test_a_failed_warm_up_does_not_hold_readiness(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    register(ctx, n_models=2)

    def broken(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(warmup, "_warm_chunk", broken)
    with TestClient(create_app(container=make_container(ctx, cache_warmup=True))) as client:
        body = _ready(client)
        assert body["cache_warmup"]["error"] == "RuntimeError: disk on fire"  # type: ignore[index]


def test_the_heap_is_frozen_at_start_and_after_warming(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    register(ctx, n_models=3)
    calls: list[None] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(None))  # no real freeze: no leak
    with TestClient(create_app(container=make_container(ctx))) as client:
        assert client.get("/healthz").status_code == 200
    assert calls == []  # off in make_container
    with TestClient(create_app(container=make_container(ctx, gc_freeze=True))) as client:
        assert client.get("/healthz").status_code == 200
    assert len(calls) == 1  # at start
    with TestClient(create_app(container=make_container(ctx, gc_freeze=True, cache_warmup=True))) as client:
        _ready(client)
    assert len(calls) == 3  # at start and once the warm-up is done


def test_warm_up_loads_the_routing_pool(ctx: Context) -> None:
    """After the warm-up, a route over named candidates is cut from the cached pool (no SQL read of the
    candidates), as it is once any request has loaded the pool; without the warm-up, it is not."""
    ids = register(ctx, n_models=4)
    pool_cache._CACHES.clear()
    with TestClient(create_app(container=make_container(ctx, cache_warmup=False))) as client:
        assert client.get("/readyz").status_code == 200
        assert pool_subset(ctx, ids[:2]) is None
    with TestClient(create_app(container=make_container(ctx, cache_warmup=True))) as client:
        _ready(client)
        cut = pool_subset(ctx, ids[:2])
        assert cut is not None and cut.ids == ids[:2]
