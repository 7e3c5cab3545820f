"""Registered encoders: list them, register a checkpoint, promote one or roll back (both as jobs)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from api.deps import AdminAuth, ContainerDep, ReadAuth
from api.lifecycle import loader_for
from registry.jobs.service import submit_job
from registry.schemas import EncoderCreate, EncoderRead, JobCreate, JobRead
from registry.services import encoders

router = APIRouter(prefix="/v1", tags=["encoders"])


@router.get("/encoders", response_model=list[EncoderRead])
def list_encoders(container: ContainerDep, _: ReadAuth) -> list[EncoderRead]:
    """Every registered encoder, newest first; exactly one is `serving`, the rollback target is `previous`."""
    return encoders.list_encoders(container)


@router.get("/encoders/{encoder_id}", response_model=EncoderRead)
def get_encoder(encoder_id: uuid.UUID, container: ContainerDep, _: ReadAuth) -> EncoderRead:
    return encoders.get_encoder(container, encoder_id)


@router.post("/encoders", response_model=EncoderRead, status_code=status.HTTP_201_CREATED)
def register_encoder(body: EncoderCreate, container: ContainerDep, _: AdminAuth) -> EncoderRead:
    """Register a checkpoint folder on the server as a candidate (loaded once to check it)."""
    loader = getattr(container.serving, "loader", None)
    return encoders.register_encoder(container, body.path, loader_for(container, loader), report=body.report)


def _accepted(job: JobRead, response: Response) -> JobRead:
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.post("/encoders/{encoder_id}/promote", response_model=JobRead, status_code=status.HTTP_202_ACCEPTED)
def promote(encoder_id: uuid.UUID, container: ContainerDep, key: AdminAuth, response: Response) -> JobRead:
    """Build the encoder's collections from SQL in the background, then switch to it atomically (a job:
    follow it at the Location). Requests keep being answered by the encoder in service until the switch."""
    encoders.get_encoder(container, encoder_id)  # 404 now rather than a failed job
    job = submit_job(
        container,
        JobCreate(kind="promote", params={"encoder_id": str(encoder_id)}),
        created_by=key.name if key else None,
    )
    return _accepted(job, response)


@router.post("/encoders/rollback", response_model=JobRead, status_code=status.HTTP_202_ACCEPTED)
def rollback(container: ContainerDep, key: AdminAuth, response: Response) -> JobRead:
    """Switch back to the previous encoder (a job): its collections are caught up, not rebuilt."""
    encoders.previous_encoder(container)  # 409 now when there is none
    job = submit_job(container, JobCreate(kind="rollback", params={}), created_by=key.name if key else None)
    return _accepted(job, response)
