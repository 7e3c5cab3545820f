"""Liveness and readiness probes (no auth: orchestrators call them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import ContainerDep
from registry import services

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
def readyz(request: Request, container: ContainerDep) -> JSONResponse:
    """Database, vector index and encoder all answer, and the start-up cache warm-up is over (finished,
    failed or disabled: `LOCUS_CACHE_WARMUP`); 503 otherwise."""
    checks = services.readiness(container)
    warmup = getattr(request.app.state, "warmup", None)
    checks["cache_warmup"] = warmup is None or warmup.ready
    body: dict[str, Any] = {
        "ready": all(checks.values()),
        "checks": checks,
        "encoder_fingerprint": container.embedder.fingerprint,
    }
    if warmup is not None:
        body["cache_warmup"] = warmup.describe()
    if checks["database"]:
        # Vectors from another encoder version are not served; a reindex brings them back.
        body["models_needing_reindex"] = services.stale_models(container)
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
