"""/v1/jobs: submit background jobs (202 + Location), follow their progress, cancel them."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.deps import AdminAuth, Container, ContainerDep, Limit, Offset, ReadAuth, WriteAuth
from api.importing import FORMATS
from api.routes.imports import UploadQuery, UploadQueryDep, _unzip
from registry import jobs
from registry.errors import InvalidInput
from registry.schemas import (
    ApiKeyRead,
    ImportJobParams,
    ImportRequest,
    JobCreate,
    JobKindRead,
    JobRead,
    JobState,
    Page,
)

router = APIRouter(prefix="/v1", tags=["jobs"])


def _who(key: ApiKeyRead | None) -> str | None:
    return None if key is None else f"key:{key.prefix}:{key.name}"


def _accepted(response: Response, job: JobRead) -> JobRead:
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
def submit_job(body: JobCreate, response: Response, container: ContainerDep, key: WriteAuth) -> JobRead:
    """Queue a job (kinds: GET /v1/jobs/kinds); bad parameters are refused here with 422."""
    job = jobs.submit_job(container, body, created_by=_who(key), scopes=None if key is None else key.scopes)
    return _accepted(response, job)


@router.get("/jobs")
def list_jobs(
    container: ContainerDep,
    _: ReadAuth,
    state: Annotated[list[JobState] | None, Query(description="any of these states")] = None,
    kind: Annotated[list[str] | None, Query(description="any of these kinds")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[JobRead]:
    """Jobs, newest first."""
    return jobs.list_jobs(container, states=state or [], kinds=kind or [], limit=limit, offset=offset)


@router.get("/jobs/kinds")
def list_job_kinds(_: ReadAuth) -> list[JobKindRead]:
    """The job kinds this server runs, the scope each needs and its parameters' JSON schema."""
    return jobs.list_kinds()


@router.get("/jobs/{job_id}")
def get_job(job_id: uuid.UUID, container: ContainerDep, _: ReadAuth) -> JobRead:
    """State, stage, done/total, rate, ETA, log tail, and the result or error."""
    return jobs.get_job(container, job_id)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: uuid.UUID, container: ContainerDep, _: WriteAuth) -> JobRead:
    """Cancel: a queued job at once, a running one at its next progress report; a finished one is
    returned unchanged."""
    return jobs.cancel_job(container, job_id, lease_s=container.settings.job_lease_s)


@router.post("/jobs/imports/upload", status_code=status.HTTP_202_ACCEPTED)
def import_upload_job(
    response: Response,
    container: ContainerDep,
    key: AdminAuth,
    data: Annotated[bytes, Body(media_type="application/octet-stream")],
    q: UploadQueryDep,
    limit_models: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> JobRead:
    """Stage an uploaded log (as POST /v1/imports/upload takes it) and import it as a job (202)."""
    options = import_options(q, limit_models=limit_models)
    return _accepted(response, queue_upload_import(container, key, data, q.filename, options))


def import_options(q: UploadQuery, **extra: Any) -> ImportJobParams:
    """Import options from the upload's query parameters; bad ones are InvalidInput naming them (a 422,
    not a 500)."""
    fields = {k: v for k, v in dataclasses.asdict(q).items() if k != "filename"}
    try:
        return ImportJobParams(**fields, **extra)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(problems) from None


def queue_upload_import(
    container: Container, key: ApiKeyRead | None, data: bytes, filename: str, options: ImportJobParams
) -> JobRead:
    """Stage the upload under LOCUS_JOB_DIR/uploads/<id>/ and queue an import job reading it."""
    if options.format not in FORMATS:
        raise InvalidInput(f"unknown format {options.format!r}; one of {FORMATS}")
    if not data:
        raise InvalidInput("empty upload: send the file as the request body")
    safe = PurePosixPath(filename).name
    if not safe or safe in (".", "..") or "\0" in safe or len(safe) > 255:
        raise InvalidInput(f"filename {filename!r} is not a file name")
    upload = uuid.uuid4().hex
    staged = Path(container.settings.job_dir) / "uploads" / upload
    staged.mkdir(parents=True)
    try:
        if safe.endswith(".zip"):
            unpacked = staged / ".unzip"
            _unzip(data, unpacked, container.settings.max_body_bytes * 20)
            inner = unpacked
            while len(entries := list(inner.iterdir())) == 1 and entries[0].is_dir():
                inner = entries[0]  # a zipped folder: read the folder itself, under its own name
            inner.rename(staged / (inner.name if inner != unpacked else PurePosixPath(safe).stem))
            shutil.rmtree(unpacked, ignore_errors=True)
        else:
            (staged / safe).write_bytes(data)
        params = options.model_copy(update={"upload": upload}).model_dump(mode="json", exclude_defaults=True)
        body = JobCreate(kind="import", params=params)
        return jobs.submit_job(
            container, body, created_by=_who(key), scopes=None if key is None else key.scopes
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def queue_path_import(container: Container, key: ApiKeyRead | None, req: ImportRequest) -> JobRead:
    """Queue an import job of a server path (POST /v1/imports?background=true)."""
    params = ImportJobParams(
        path=req.path,
        format=req.format,
        model_name=req.model_name,
        metric=req.metric,
        filter=req.filter,
        benchmark=req.benchmark,
        key_by=req.key_by,
        name=req.name,
    )
    body = JobCreate(kind="import", params=params.model_dump(mode="json", exclude_defaults=True))
    return jobs.submit_job(container, body, created_by=_who(key), scopes=None if key is None else key.scopes)


def accepted_response(job: JobRead) -> JSONResponse:
    """202 with the job and its Location, for endpoints whose 200 answer is another schema."""
    return JSONResponse(
        job.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )
