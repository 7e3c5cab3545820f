"""/v1 lifecycle endpoints of a model: embedding history, drift watch (re-probes), route outcomes."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from api.deps import ContainerDep, Limit, Offset, ReadAuth, WriteAuth
from api.routes.decisions import ThresholdsDep
from registry.decisions.schemas import (
    DriftCheckRead,
    DriftedModelRead,
    OutcomeRead,
    OutcomeRequest,
    ProbeRequest,
)
from registry.decisions.service.drift import check_drift, drift_checks, drifted_models
from registry.decisions.service.outcomes import record_outcome
from registry.schemas import HistoryRead, Page
from registry.services.history import model_history

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/models/{model_id}/history")
def get_history(
    model_id: uuid.UUID, container: ContainerDep, _: ReadAuth, limit: Limit = 50, offset: Offset = 0
) -> HistoryRead:
    """The model's embeddings, newest first (encoder, evaluation count, reason, distance moved), and a
    summary of how far it moved under the serving encoder, and why."""
    return model_history(container, model_id, limit=limit, offset=offset)


@router.post("/models/{model_id}/probes", status_code=201)
def probe_model(
    model_id: uuid.UUID, body: ProbeRequest, container: ContainerDep, thresholds: ThresholdsDep, _: WriteAuth
) -> DriftCheckRead:
    """Judge the endpoint's new scores (e.g. on GET /v1/probes) against the model's stored scores: flag
    the model as drifted on `different`, clear the flag on `same`. The scores are not stored."""
    return check_drift(container, model_id, body, thresholds)


@router.get("/models/{model_id}/drift")
def get_model_drift(
    model_id: uuid.UUID, container: ContainerDep, _: ReadAuth, limit: Limit = 50, offset: Offset = 0
) -> Page[DriftCheckRead]:
    """The model's drift checks, newest first."""
    return drift_checks(container, model_id, limit=limit, offset=offset)


@router.get("/drift")
def list_drifted(
    container: ContainerDep, _: ReadAuth, limit: Limit = 50, offset: Offset = 0
) -> Page[DriftedModelRead]:
    """Models flagged as drifted, most recently flagged first, each with its latest check."""
    return drifted_models(container, limit=limit, offset=offset)


@router.post("/route/outcomes", status_code=201)
def report_outcome(
    body: OutcomeRequest, container: ContainerDep, response: Response, _: WriteAuth
) -> OutcomeRead:
    """Record whether the model a routing decision chose answered well: stored as an evaluation of that
    model (source `route-outcome`) and its embedding refined. 201 when recorded, 200 when the same
    outcome was already recorded; another score for the same decision is a 409."""
    out = record_outcome(container, body)
    if not out.created:
        response.status_code = 200
    return out
