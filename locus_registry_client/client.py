"""`LocusClient`: a typed, synchronous client of the registry's HTTP API (httpx underneath).

Requests and responses are the API's own pydantic schemas (`registry.schemas`,
`registry.decisions.schemas`), so a body the server would refuse for its shape is refused here first
(pydantic.ValidationError) and every answer comes back as a typed object.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypedDict, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from locus_registry_client import errors
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
from registry.schemas import (
    EvaluationIn,
    EvaluationRead,
    EvaluationsAdd,
    JobCreate,
    JobKindRead,
    JobRead,
    JobState,
    ModelCreate,
    ModelRead,
    ModelUpdate,
    Page,
    ProbeSetRead,
    QuestionIn,
    QuestionsCreate,
    QuestionsCreated,
    SimilarRead,
    Status,
)

R = TypeVar("R")
ModelId = uuid.UUID | str
JobId = uuid.UUID | str
DEFAULT_URL = "http://127.0.0.1:8000"


class Filters(TypedDict, total=False):
    """Hard constraints on models, as the API's query parameters (lists match any of their values)."""

    status: Sequence[Status]
    provider: Sequence[str]
    family: Sequence[str]
    license: Sequence[str]
    tag: Sequence[str]  # every one of these tags
    min_params: float
    max_params: float
    min_context_window: int
    max_input_price: float
    max_output_price: float


class LocusClient:
    """The registry's API as methods. Use as a context manager, or call `close()`.

    `api_key` is sent as a Bearer token. Pass `http` to reuse a configured `httpx.Client` (its
    base URL is then used as is), e.g. a Starlette `TestClient` around an in-process app.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the connection pool (not a client passed in as `http`)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> LocusClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one request; an error status raises the matching `errors.APIError` subclass.

        `content`: a raw body (sent as application/octet-stream), e.g. an uploaded file.
        """
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        if body is not None:
            # exclude_unset: a ModelUpdate sends only the fields given (an explicit None clears a field).
            content = body.model_dump_json(exclude_unset=True).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method, path, content=content, params=_params(params or {}), headers=headers
            )
        except httpx.TransportError as exc:
            raise errors.TransportError(f"{method} {path}: {exc}") from exc
        if response.is_error:
            raise errors.from_response(response)
        return response

    def _call(
        self,
        schema: type[R] | Any,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
    ) -> R:
        response = self.request(method, path, body=body, params=params, content=content)
        try:
            out: R = TypeAdapter(schema).validate_json(response.content)
        except ValidationError as exc:
            raise errors.ResponseError(f"{method} {path}: unexpected response body: {exc}") from exc
        return out

    # ------------------------------------------------------------ service

    def health(self) -> dict[str, Any]:
        """`GET /healthz`: the process is up."""
        return self._call(dict[str, Any], "GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        """`GET /readyz` (raises ServiceUnavailable when a dependency is down)."""
        return self._call(dict[str, Any], "GET", "/readyz")

    # ------------------------------------------------------------ models

    def register(self, model: ModelCreate | None = None, /, **fields: Any) -> ModelRead:
        """Register a model (a `ModelCreate`, or its fields as keywords) with optional evaluations."""
        body = model if model is not None else ModelCreate.model_validate(fields)
        return self._call(ModelRead, "POST", "/v1/models", body=body)

    def add_evaluations(
        self, model_id: ModelId, evaluations: Sequence[EvaluationIn | Mapping[str, Any]]
    ) -> ModelRead:
        """Add or replace scores; the server re-embeds the model from its full evaluation set."""
        body = EvaluationsAdd(evaluations=[_as(EvaluationIn, e) for e in evaluations])
        return self._call(ModelRead, "POST", f"/v1/models/{model_id}/evaluations", body=body)

    def get_model(self, model_id: ModelId, *, include_vector: bool = False) -> ModelRead:
        return self._call(
            ModelRead, "GET", f"/v1/models/{model_id}", params={"include_vector": include_vector}
        )

    def list_models(
        self, filters: Filters | None = None, *, limit: int = 50, offset: int = 0
    ) -> Page[ModelRead]:
        """One page of models matching `filters`, ordered by name."""
        return self._call(
            Page[ModelRead], "GET", "/v1/models", params={**(filters or {}), "limit": limit, "offset": offset}
        )

    def iter_models(self, filters: Filters | None = None, *, page_size: int = 500) -> Iterator[ModelRead]:
        """Every model matching `filters`, fetched page by page."""
        offset = 0
        while True:
            page = self.list_models(filters, limit=page_size, offset=offset)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def update_model(
        self, model_id: ModelId, update: ModelUpdate | None = None, /, **fields: Any
    ) -> ModelRead:
        """Change metadata (only the fields given; `None` clears an optional field)."""
        body = update if update is not None else ModelUpdate.model_validate(fields)
        return self._call(ModelRead, "PATCH", f"/v1/models/{model_id}", body=body)

    def delete_model(self, model_id: ModelId) -> None:
        self.request("DELETE", f"/v1/models/{model_id}")

    def list_evaluations(
        self, model_id: ModelId, *, limit: int = 100, offset: int = 0
    ) -> Page[EvaluationRead]:
        return self._call(
            Page[EvaluationRead],
            "GET",
            f"/v1/models/{model_id}/evaluations",
            params={"limit": limit, "offset": offset},
        )

    def probes(self, n: int = 128) -> ProbeSetRead:
        """The registry's probe set: the questions to score a new endpoint on before registering it."""
        return self._call(ProbeSetRead, "GET", "/v1/probes", params={"n": n})

    def add_questions(self, questions: Sequence[QuestionIn | Mapping[str, Any]]) -> QuestionsCreated:
        """Register questions (key, text, category, benchmark); existing identical ones are kept."""
        body = QuestionsCreate(questions=[_as(QuestionIn, q) for q in questions])
        return self._call(QuestionsCreated, "POST", "/v1/questions", body=body)

    # ------------------------------------------------------------ decisions

    def similar(
        self,
        model_id: ModelId,
        *,
        k: int = 10,
        filters: Filters | None = None,
        rank_by: Literal["behaviour", "embedding"] | None = None,
    ) -> SimilarRead:
        """The k models nearest to this one (itself excluded); `rank_by` default: the server's."""
        params = {**(filters or {}), "k": k, "rank_by": rank_by}
        return self._call(SimilarRead, "GET", f"/v1/models/{model_id}/similar", params=params)

    def fallbacks(
        self,
        model_id: ModelId,
        *,
        k: int = 5,
        filters: Filters | None = None,
        same_license: bool = False,
    ) -> FallbacksRead:
        """The nearest active models meeting the constraints (context window, price, licence, ...)."""
        params = {**(filters or {}), "k": k, "same_license": same_license}
        return self._call(FallbacksRead, "GET", f"/v1/models/{model_id}/fallbacks", params=params)

    def portfolio(self, request: PortfolioRequest | None = None, /, **fields: Any) -> PortfolioRead:
        """Choose k models (or a parameter / price budget's worth) that cover the pool."""
        body = request if request is not None else PortfolioRequest.model_validate(fields)
        return self._call(PortfolioRead, "POST", "/v1/portfolios", body=body)

    def route(self, queries: Sequence[str] | RouteRequest, /, **fields: Any) -> RouteRead:
        """Per query, the candidates ranked by predicted P(correct) and the chosen (available) model."""
        if isinstance(queries, RouteRequest):
            body = queries
        else:
            body = RouteRequest.model_validate({"queries": list(queries), **fields})
        return self._call(RouteRead, "POST", "/v1/route", body=body)

    def fingerprint(
        self, evaluations: Sequence[EvaluationIn | Mapping[str, Any]], *, k: int = 5, min_shared: int = 32
    ) -> FingerprintRead:
        """Which registered models do these scores come from? Nothing is registered."""
        body = FingerprintRequest(
            evaluations=[_as(EvaluationIn, e) for e in evaluations], k=k, min_shared=min_shared
        )
        return self._call(FingerprintRead, "POST", "/v1/fingerprint", body=body)

    def compare(self, a: ModelId, b: ModelId) -> CompareRead:
        """Distance, verdict, predicted agreement and per-category predicted accuracy of two models."""
        return self._call(CompareRead, "GET", "/v1/compare", params={"a": a, "b": b})

    def duplicates(self, *, limit: int = 1000, min_shared: int = 32) -> DuplicatesRead:
        """Registered model pairs judged `same`."""
        return self._call(
            DuplicatesRead, "GET", "/v1/duplicates", params={"limit": limit, "min_shared": min_shared}
        )

    # ------------------------------------------------------------ background jobs

    def submit_job(self, kind: str, params: Mapping[str, Any] | None = None) -> JobRead:
        """Queue a job (`job_kinds()` lists them: import, reindex, train, ...); returns it queued."""
        return self._call(JobRead, "POST", "/v1/jobs", body=JobCreate(kind=kind, params=dict(params or {})))

    def get_job(self, job_id: JobId) -> JobRead:
        """A job's state, stage, done/total, rate, ETA, log tail, result or error."""
        return self._call(JobRead, "GET", f"/v1/jobs/{job_id}")

    def list_jobs(
        self,
        *,
        state: Sequence[JobState] | None = None,
        kind: Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[JobRead]:
        """Jobs, newest first, optionally only those in these states or of these kinds."""
        params = {"state": state, "kind": kind, "limit": limit, "offset": offset}
        return self._call(Page[JobRead], "GET", "/v1/jobs", params=params)

    def job_kinds(self) -> list[JobKindRead]:
        """The kinds the server runs, the scope each needs and its parameters' JSON schema."""
        return self._call(list[JobKindRead], "GET", "/v1/jobs/kinds")

    def cancel_job(self, job_id: JobId) -> JobRead:
        """Cancel a queued job, or ask a running one to stop at its next report (finished: unchanged)."""
        return self._call(JobRead, "POST", f"/v1/jobs/{job_id}/cancel")

    def import_job(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        format: str,
        filename: str | None = None,
        **options: Any,
    ) -> JobRead:
        """Upload a log (a file, or a folder zipped) and import it in the background (admin key).

        `options`: model_name, metric, filter, benchmark (lists of "[TASK=]VALUE"), key_by, name,
        limit_models, as `locus-registry import` takes them.
        """
        if isinstance(file, bytes):
            if filename is None:
                raise ValueError("give filename= with bytes (its extension tells a .zip apart)")
            data = file
        else:
            path = Path(file)
            data, filename = path.read_bytes(), filename or path.name
        return self._call(
            JobRead,
            "POST",
            "/v1/jobs/imports/upload",
            params={"format": format, "filename": filename, **options},
            content=data,
        )

    def wait_job(
        self,
        job_id: JobId,
        *,
        progress: bool = True,
        poll: float = 1.0,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> JobRead:
        """Poll until the job finishes, with a progress bar per stage (tqdm) when `progress`.

        Returns the finished job; raises JobFailed when it failed or was cancelled (unless
        `raise_on_failure=False`) and JobTimeout when `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bars = _StageBars() if progress else None
        try:
            while True:
                job = self.get_job(job_id)
                if bars is not None:
                    bars.update(job)
                if job.state in ("succeeded", "failed", "cancelled"):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.JobTimeout(job, timeout or 0.0)
                time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
        finally:
            if bars is not None:
                bars.close()
        if raise_on_failure and job.state != "succeeded":
            raise errors.JobFailed(job)
        return job


class _StageBars:
    """One tqdm bar per job stage, moved to each polled state."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def update(self, job: JobRead) -> None:
        from tqdm.auto import tqdm

        if job.stage is None:
            return
        bar = self.bars.get(job.stage)
        if bar is None:
            bar = self.bars[job.stage] = tqdm(total=job.total, desc=f"{job.kind}: {job.stage}", unit="")
        if job.total is not None and bar.total != job.total:
            bar.total = job.total
        bar.update(job.done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _as(schema: type[BaseModel], item: Any) -> Any:
    return item if isinstance(item, schema) else schema.model_validate(item)


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters as httpx sends them: lists repeat the key, booleans are lower-case, None dropped."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | bytes):
            out[key] = value
        elif isinstance(value, Sequence):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out
