"""/v1/models: register, read, list, patch, delete, evaluations, similar."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import ContainerDep, FilterDep, Limit, Offset, ReadAuth, WriteAuth
from api.routes.imports import ProvenanceDep
from registry import services
from registry.schemas import (
    EvaluationFilter,
    EvaluationRead,
    EvaluationsAdd,
    ModelCreate,
    ModelRead,
    ModelUpdate,
    Page,
    SimilarRead,
)

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", status_code=201)
def register_model(body: ModelCreate, container: ContainerDep, _: WriteAuth) -> ModelRead:
    """Register a model with optional evaluations; the response carries its embedding."""
    return services.register_model(container, body)


@router.get("")
def list_models(
    container: ContainerDep, _: ReadAuth, flt: FilterDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ModelRead]:
    """Models matching the filters, ordered by name."""
    return services.list_models(container, flt, limit=limit, offset=offset)


@router.get("/{model_id}")
def get_model(
    model_id: uuid.UUID,
    container: ContainerDep,
    _: ReadAuth,
    include_vector: bool = Query(False, description="include the embedding vector"),
) -> ModelRead:
    return services.get_model(container, model_id, include_vector=include_vector)


@router.patch("/{model_id}")
def update_model(model_id: uuid.UUID, body: ModelUpdate, container: ContainerDep, _: WriteAuth) -> ModelRead:
    """Change metadata (e.g. `status`); filters see the change at once."""
    return services.update_model(container, model_id, body)


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: uuid.UUID, container: ContainerDep, _: WriteAuth) -> Response:
    services.delete_model(container, model_id)
    return Response(status_code=204)


@router.post("/{model_id}/evaluations")
def add_evaluations(
    model_id: uuid.UUID, body: EvaluationsAdd, container: ContainerDep, _: WriteAuth
) -> ModelRead:
    """Add or replace scores; the embedding is recomputed from the full evaluation set."""
    return services.add_evaluations(container, model_id, body.evaluations)


@router.get("/{model_id}/evaluations")
def list_evaluations(
    model_id: uuid.UUID,
    container: ContainerDep,
    _: ReadAuth,
    limit: Limit = 100,
    offset: Offset = 0,
    tool: Annotated[list[str] | None, Query(description="provenance: any of these tools")] = None,
    task: Annotated[list[str] | None, Query(description="provenance: any of these tasks")] = None,
    source_id: Annotated[
        list[uuid.UUID] | None, Query(description="provenance: any of these records")
    ] = None,
    min_run_at: Annotated[dt.datetime | None, Query(description="provenance: runs at or after this")] = None,
    max_run_at: Annotated[dt.datetime | None, Query(description="provenance: runs at or before this")] = None,
    with_provenance: Annotated[
        bool | None, Query(description="true: imported scores only; false: the others")
    ] = None,
) -> Page[EvaluationRead]:
    """A page of the model's scores with their provenance, optionally only those of given provenance."""
    flt = EvaluationFilter(
        tools=tool or [],
        tasks=task or [],
        source_ids=source_id or [],
        min_run_at=min_run_at,
        max_run_at=max_run_at,
        with_provenance=with_provenance,
    )
    return services.list_evaluations(container, model_id, limit=limit, offset=offset, flt=flt)


@router.get("/{model_id}/similar")
def similar_models(
    model_id: uuid.UUID,
    container: ContainerDep,
    _: ReadAuth,
    flt: FilterDep,
    provenance: ProvenanceDep,
    k: int = Query(10, ge=1, le=1000),
    rank_by: Literal["behaviour", "embedding"] = Query(
        "behaviour",
        description="behaviour: vector-search candidates re-ranked with the observed disagreement on "
        "shared questions; embedding: embedding distance only",
    ),
) -> SimilarRead:
    """The k nearest models (the model itself excluded) with their distances and shared-question evidence;
    with provenance parameters (tool, task, ...), on evaluations of that provenance only."""
    return services.similar_models(container, model_id, k, flt, rank_by, provenance)
