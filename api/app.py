"""`create_app(settings)`: the FastAPI application. Heavy objects are built in the lifespan, not at import."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import answers, errors, metrics
from api.deps import Container, reject_unknown_query
from api.middleware import RequestContext, request_id_of
from api.routes import drift, health, imports, jobs, keys, models, questions
from api.warmup import WarmupState
from registry.decisions.service import load_pool
from registry.services.warmup import warm_caches
from registry.settings import Settings, get_settings

log = logging.getLogger(__name__)

ROUTERS: list[APIRouter] = [
    health.router,
    questions.router,
    models.router,
    keys.router,
    imports.router,
    jobs.router,
    drift.router,
]
# Routers of other packages, included when their module exists.
OPTIONAL_ROUTERS = [
    "api.routes.decisions",
    "api.routes.probes",
    "api.routes.export",
    "api.routes.atlas",
    "api.routes.encoders",
]


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 (declared length or counted while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send, int(declared))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge as exc:
            await self._refuse(scope, send, exc.size)

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        body = json.dumps(
            errors.error_body(
                "PayloadTooLarge",
                f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes",
                request_id_of(scope),
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _optional_routers() -> list[APIRouter]:
    out = []
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # the module exists but one of its imports is missing: a real error
            continue
        out.append(module.router)
    return out


def _freeze_heap(settings: Settings) -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (`gc.freeze`, with
    `LOCUS_GC_FREEZE`): the modules, the encoder and, after the warm-up, the cached entries. A full
    collection stops every request while it scans the heap: at 1,000 models a served process holds about
    700,000 tracked objects, 600,000 of them from imports, and one collection took 350-370 ms; with the
    heap frozen, 20 ms (scratch, in-process). Frozen objects are still freed by reference counting when
    dropped (cache entries hold no cycles); only cyclic garbage among them would stay."""
    if settings.gc_freeze:
        gc.freeze()


@asynccontextmanager
async def _cache_warmup(app: FastAPI, container: Container) -> AsyncIterator[None]:
    """Fill `similar`'s caches for every model, then load the decisions' pool, in a background thread
    (`LOCUS_CACHE_WARMUP`), so that `/readyz` says ready once a request about any model is answered warm
    (`registry.services.warmup`)."""
    state = app.state.warmup = WarmupState(enabled=container.settings.cache_warmup)
    if not state.enabled:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        try:
            started = time.perf_counter()
            ctx = container.current()
            report = warm_caches(ctx, stop=stop, progress=state.advance)
            if not stop.is_set():
                # The routing pool too: a route over named candidates (a gateway's deployments) reads
                # them from it only once some request has loaded it, and from SQL until then (at 1,000
                # models, scratch: 67-74 against 112-120 routes/s over 100 named candidates).
                load_pool(ctx, None)
            state.finish(report.models, time.perf_counter() - started)
            _freeze_heap(container.settings)  # the warmed entries live as long as the process
            log.info("caches warmed: %d models in %.2f s", report.models, report.seconds)
        except Exception as exc:  # requests fill the caches as they come: never block readiness on it
            log.exception("cache warm-up failed")
            state.fail(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="locus-cache-warmup", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)


@asynccontextmanager
async def _serving(app: FastAPI, container: Container) -> AsyncIterator[None]:
    """What the app runs beside requests for its lifetime, whoever built the container: the frozen heap,
    the cache warm-up and the job workers."""
    app.state.container = container
    _freeze_heap(container.settings)
    async with _cache_warmup(app, container), _job_runner(container):
        yield


@asynccontextmanager
async def _job_runner(container: Container) -> AsyncIterator[None]:
    """Background-job worker threads for the app's lifetime (LOCUS_JOB_WORKERS; 0 = none)."""
    from api import jobs as job_wiring

    job_wiring.install(container.settings)
    runner = job_wiring.start_runner(container, container.settings)
    try:
        yield
    finally:
        if runner is not None:  # handlers stop at their next report; their jobs go back to the queue
            await asyncio.to_thread(runner.stop)


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    """The registry's HTTP application.

    Without `container`, the lifespan builds one from `settings` (engine, Qdrant index, embedder)
    and closes it on shutdown; tests pass a ready container to reuse a small encoder. With one, what
    runs beside requests (the cache warm-up, job workers, the frozen heap) follows `container.settings`,
    not `settings`: build the container with the settings those should follow.
    """
    cfg = settings or (container.settings if container is not None else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if container is not None:
            async with _serving(app, container):
                yield
            return
        from api.wiring import build_container  # imports torch: keep it out of module import

        built = build_container(cfg)
        try:
            async with _serving(app, built):
                yield
        finally:
            built.close()

    app = FastAPI(
        title="LOCUS model registry",
        version="0.1.0",
        description="Register LLMs with their evaluations; find models that behave alike.",
        lifespan=lifespan,
    )
    errors.install(app)
    for router in [*ROUTERS, *_optional_routers()]:
        app.include_router(router, responses=errors.RESPONSES, dependencies=[Depends(reject_unknown_query)])
    answers.install(app, cfg.answer_cache_mb)  # repeated similar/fallbacks from their stored answer
    metrics.install(app)  # /metrics: per-route counts and latency, registry gauges
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(RequestContext)  # outermost: ids and catches whatever the layers inside raise
    return app
