"""/v1/imports (admin): import evaluation logs by server path or upload; provenance listings."""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query

from api.deps import AdminAuth, ContainerDep, Limit, Offset, ReadAuth
from api.importing import FORMATS, load_batch
from registry import importers, services
from registry.errors import Forbidden, InvalidInput
from registry.importers import ImportOptions
from registry.schemas import (
    EvaluationFilter,
    EvaluationSourceCount,
    ImportReport,
    ImportRequest,
    JobRead,
    ModelProvenanceRead,
    Page,
    ProvenanceEmbeddingRead,
)

router = APIRouter(prefix="/v1", tags=["imports"])


def _options(req: ImportRequest) -> ImportOptions:
    return ImportOptions(
        model_name=req.model_name,
        metric=req.metric,
        filter=req.filter,
        benchmark=req.benchmark,
        key_by=req.key_by,
        name=req.name,
    )


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}; one of {FORMATS}")


BACKGROUND = Query(description="true: queue an import job and answer 202 with it (GET /v1/jobs/{id})")


@dataclass(frozen=True)
class UploadQuery:
    """The query parameters of both upload endpoints (`/v1/imports/upload`, `/v1/jobs/imports/upload`),
    with the repeatable TASK=VALUE ones parsed (a bad one is a 422 naming it)."""

    format: str
    filename: str
    model_name: str | None
    metric: dict[str, str]
    filter: dict[str, str]
    benchmark: dict[str, str]
    key_by: Literal["id", "text"]
    name: str | None


def upload_query(
    format: Annotated[str, Query(description=f"one of {FORMATS}")],
    filename: Annotated[str, Query(description="the file's name (a .zip is unpacked: send folders zipped)")],
    model_name: str | None = None,
    metric: Annotated[list[str] | None, Query(description="[TASK=]METRIC, repeatable")] = None,
    filter: Annotated[list[str] | None, Query(description="[TASK=]FILTER, repeatable")] = None,
    benchmark: Annotated[list[str] | None, Query(description="TASK=NAME, repeatable")] = None,
    key_by: Annotated[str, Query(pattern="^(id|text)$")] = "id",
    name: str | None = None,
) -> UploadQuery:
    return UploadQuery(
        format=format,
        filename=filename,
        model_name=model_name,
        metric=_pairs(metric, "metric"),
        filter=_pairs(filter, "filter"),
        benchmark=_pairs(benchmark, "benchmark"),
        key_by="text" if key_by == "text" else "id",
        name=name,
    )


UploadQueryDep = Annotated[UploadQuery, Depends(upload_query)]


@router.post("/imports", responses={202: {"model": JobRead, "description": "queued as a job (background)"}})
def import_server_path(
    body: ImportRequest,
    container: ContainerDep,
    key: AdminAuth,
    background: Annotated[bool, BACKGROUND] = False,
) -> ImportReport:
    """Import a file or folder on the server, under LOCUS_IMPORT_ROOT (pickles are refused)."""
    if background:
        from api.routes import jobs as job_routes  # imports this module's helpers

        return job_routes.accepted_response(job_routes.queue_path_import(container, key, body))  # type: ignore[return-value]
    _check_format(body.format)
    root = container.settings.import_root
    if root is None:
        raise Forbidden("imports by server path are off: set LOCUS_IMPORT_ROOT, or upload the file")
    if "\0" in body.path:
        raise InvalidInput("path must not contain NUL characters")
    base = Path(root).resolve()
    target = (base / body.path).resolve()
    if not target.is_relative_to(base):
        raise Forbidden(f"path {body.path!r} is outside the import root")
    if not target.exists():
        raise InvalidInput(f"path {body.path!r} does not exist under the import root")
    batch = load_batch(target, body.format, _options(body))
    return services.import_batch(container, batch)


@router.post(
    "/imports/upload", responses={202: {"model": JobRead, "description": "queued as a job (background)"}}
)
def import_upload(
    container: ContainerDep,
    key: AdminAuth,
    data: Annotated[bytes, Body(media_type="application/octet-stream")],
    q: UploadQueryDep,
    background: Annotated[bool, BACKGROUND] = False,
) -> ImportReport:
    """Import an uploaded log (the request body): one file, or a zip of a folder (lm-eval, HELM, ...)."""
    if background:
        from api.routes import jobs as job_routes  # imports this module's helpers

        options = job_routes.import_options(q)
        job = job_routes.queue_upload_import(container, key, data, q.filename, options)
        return job_routes.accepted_response(job)  # type: ignore[return-value]
    _check_format(q.format)
    filename = q.filename
    if not data:
        raise InvalidInput("empty upload: send the file as the request body")
    safe = PurePosixPath(filename).name
    if not safe or safe in (".", "..") or "\0" in safe or len(safe) > 255:
        raise InvalidInput(f"filename {filename!r} is not a file name")
    req = ImportRequest(
        format=q.format,
        path=safe,
        model_name=q.model_name,
        metric=q.metric,
        filter=q.filter,
        benchmark=q.benchmark,
        key_by=q.key_by,
        name=q.name,
    )
    with tempfile.TemporaryDirectory(prefix="locus-import-") as tmp:
        root = Path(tmp)
        if safe.endswith(".zip"):
            target = root / "upload"
            _unzip(data, target, container.settings.max_body_bytes * 20)
            entries = list(target.iterdir())
            while len(entries) == 1 and entries[0].is_dir():  # a zipped folder: read the folder itself
                target = entries[0]
                entries = list(target.iterdir())
        else:
            target = root / safe
            target.write_bytes(data)
        batch = load_batch(target, q.format, _options(req))
    return services.import_batch(container, batch)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or ():
        task, sep, value = v.partition("=")
        if not sep:
            task, value = "*", v
        if not task.strip() or not value.strip():
            raise InvalidInput(f"{what} {v!r}: expected TASK=VALUE")
        out[task.strip()] = value.strip()
    return out


def _unzip(data: bytes, dest: Path, max_bytes: int) -> None:
    """Unpack a zip upload, refusing paths that leave `dest` and archives that inflate past `max_bytes`."""
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise importers.ImportFormatError("the upload is named .zip but is not a zip archive") from None
    with archive:
        total = sum(i.file_size for i in archive.infolist())
        if total > max_bytes:
            raise InvalidInput(f"the zip inflates to {total} bytes, over the limit of {max_bytes}")
        base = dest.resolve()
        for info in archive.infolist():
            out = (dest / info.filename).resolve()
            if not out.is_relative_to(base):
                raise InvalidInput(f"zip entry {info.filename!r} points outside the archive")
        archive.extractall(dest)


@router.get("/evaluation-sources")
def list_evaluation_sources(
    container: ContainerDep,
    _: ReadAuth,
    tool: str | None = None,
    task: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EvaluationSourceCount]:
    """Every provenance record (tool, task, settings, file), newest first, with its evaluation count."""
    return services.list_evaluation_sources(container, tool=tool, task=task, limit=limit, offset=offset)


@router.get("/models/{model_id}/provenance")
def model_provenance(model_id: uuid.UUID, container: ContainerDep, _: ReadAuth) -> list[ModelProvenanceRead]:
    """The model card's provenance: where its scores came from, how many, their mean."""
    return services.model_provenance(container, model_id)


async def provenance_filter(
    tool: Annotated[list[str] | None, Query(description="any of these tools (lm-eval, inspect, ...)")] = None,
    task: Annotated[list[str] | None, Query(description="any of these tasks")] = None,
    source_id: Annotated[list[uuid.UUID] | None, Query(description="any of these provenance records")] = None,
    min_run_at: Annotated[dt.datetime | None, Query(description="runs at or after this time")] = None,
    max_run_at: Annotated[dt.datetime | None, Query(description="runs at or before this time")] = None,
    with_provenance: Annotated[bool | None, Query(description="true: imported scores only")] = None,
) -> EvaluationFilter:
    """Provenance filters shared by the provenance-aware reads and decisions."""
    return EvaluationFilter(
        tools=tool or [],
        tasks=task or [],
        source_ids=source_id or [],
        min_run_at=min_run_at,
        max_run_at=max_run_at,
        with_provenance=with_provenance,
    )


ProvenanceDep = Annotated[EvaluationFilter, Depends(provenance_filter)]


@router.get("/models/{model_id}/embedding")
def embedding_from_provenance(
    model_id: uuid.UUID,
    container: ContainerDep,
    _: ReadAuth,
    flt: ProvenanceDep,
) -> ProvenanceEmbeddingRead:
    """The model's embedding from only its scores of the given provenance (computed, not stored)."""
    return services.embed_model_with_provenance(container, model_id, flt)
