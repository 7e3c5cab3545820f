"""/v1 decision endpoints: portfolios, fallbacks, routing, fingerprinting, duplicates, comparison."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from api.deps import ContainerDep, FilterDep, ReadAuth
from api.routes.imports import ProvenanceDep
from registry.decisions import service
from registry.decisions.schemas import (
    CompareRead,
    DuplicatesRead,
    FallbacksRead,
    FingerprintRead,
    FingerprintRequest,
    PortfolioRead,
    PortfolioRequest,
    RouteRead,
    RouteRequest,
)

router = APIRouter(prefix="/v1", tags=["decisions"])


def get_thresholds(request: Request, container: ContainerDep) -> service.ThresholdProvider:
    """One provider per app: calibration.json beside the configured checkpoint, else the registry's data."""
    provider: service.ThresholdProvider | None = getattr(request.app.state, "fingerprint_thresholds", None)
    if provider is None:
        from encoder.checkpoint import DEFAULT_CHECKPOINT  # imports torch: only once a request needs it

        ckpt = container.settings.encoder_checkpoint or DEFAULT_CHECKPOINT
        provider = service.ThresholdProvider(Path(ckpt) / service.CALIBRATION_FILE)
        request.app.state.fingerprint_thresholds = provider
    return provider


ThresholdsDep = Annotated[service.ThresholdProvider, Depends(get_thresholds)]


@router.post("/portfolios")
def create_portfolio(body: PortfolioRequest, container: ContainerDep, _: ReadAuth) -> PortfolioRead:
    """Choose k models (or a parameter / price budget's worth) that cover the filtered pool."""
    return service.portfolio(container, body)


@router.get("/models/{model_id}/fallbacks")
def get_fallbacks(
    model_id: uuid.UUID,
    container: ContainerDep,
    _: ReadAuth,
    flt: FilterDep,
    provenance: ProvenanceDep,
    k: Annotated[int, Query(ge=1, le=100)] = 5,
    same_license: Annotated[bool, Query(description="only models under this model's license")] = False,
    rank_by: Annotated[
        Literal["behaviour", "embedding"],
        Query(description="behaviour: vector-search candidates re-ranked by behaviour distance (as similar)"),
    ] = "behaviour",
) -> FallbacksRead:
    """The nearest active models that satisfy the constraints, with predicted answer agreement (with
    provenance parameters: on evaluations of that provenance only)."""
    return service.fallbacks(
        container, model_id, k, flt, same_license=same_license, provenance=provenance, rank_by=rank_by
    )


@router.post("/route")
def route_queries(body: RouteRequest, container: ContainerDep, _: ReadAuth) -> RouteRead:
    """Per query: candidates ranked by predicted P(correct) minus a price penalty, and the chosen model."""
    return service.route_queries(container, body)


@router.post("/fingerprint")
def fingerprint(
    body: FingerprintRequest, container: ContainerDep, thresholds: ThresholdsDep, _: ReadAuth
) -> FingerprintRead:
    """Which registered models do these evaluations come from? Nothing is registered."""
    return service.fingerprint(container, body, thresholds)


@router.get("/duplicates")
def get_duplicates(
    container: ContainerDep,
    thresholds: ThresholdsDep,
    _: ReadAuth,
    provenance: ProvenanceDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    min_shared: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> DuplicatesRead:
    """Registered model pairs judged `same`: on their shared questions where enough are shared."""
    return service.duplicates(
        container, thresholds, limit=limit, min_shared=min_shared, provenance=provenance
    )


@router.get("/compare")
def compare(
    a: uuid.UUID,
    b: uuid.UUID,
    container: ContainerDep,
    thresholds: ThresholdsDep,
    _: ReadAuth,
    provenance: ProvenanceDep,
) -> CompareRead:
    """Distance, verdict, predicted agreement and per-category predicted accuracy of two models, and
    their disagreement on shared questions."""
    return service.compare(container, a, b, thresholds, provenance=provenance)
