"""The client's exception tree; every API error carries the server's `error`, `detail` and `request_id`.

LocusError
├── TransportError          the server could not be reached (connection refused, timeout, ...)
├── ResponseError           a 2xx answer that does not match the expected schema
├── JobFailed               `wait_job`: the job ended failed or cancelled (`.job` holds it)
├── JobTimeout              `wait_job`: the job was still running when the timeout ran out
└── APIError                the server answered with an error status; subclass by status:
    ├── BadRequest              400
    ├── Unauthenticated         401  (no or unknown API key)
    ├── Forbidden               403  (the key lacks the scope)
    ├── NotFound                404
    ├── Conflict                409  (name taken, model without embedding, ...)
    ├── PayloadTooLarge         413
    ├── InvalidInput            422  (`detail` names the field to fix)
    ├── ServerError             500 and any other 5xx
    └── ServiceUnavailable      503  (the vector index or database is down)
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx


class LocusError(Exception):
    """Base class of every error this client raises."""


class TransportError(LocusError):
    """The request did not get an answer (connection refused, DNS, timeout)."""


class ResponseError(LocusError):
    """The server answered 2xx with a body that does not match the schema the client expected."""


class JobFailed(LocusError):
    """A background job ended failed or cancelled; `job` is its final state (`job.error` says why)."""

    def __init__(self, job: Any) -> None:
        super().__init__(f"job {job.id} ({job.kind}) {job.state}: {job.error or 'no error message'}")
        self.job = job


class JobTimeout(LocusError):
    """A background job was still unfinished when `wait_job`'s timeout ran out (it keeps running)."""

    def __init__(self, job: Any, timeout: float) -> None:
        super().__init__(f"job {job.id} ({job.kind}) still {job.state} after {timeout:g} s")
        self.job = job


class APIError(LocusError):
    """An error status with the registry's body `{"error", "detail", "request_id"}`."""

    status_code: int = 0

    def __init__(self, status_code: int, error: str, detail: str, request_id: str | None = None) -> None:
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{status_code} {error}: {detail}{rid}")
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.request_id = request_id


class BadRequest(APIError):
    """400."""


class Unauthenticated(APIError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(APIError):
    """403: the API key lacks the needed scope."""


class NotFound(APIError):
    """404: the model, question or route does not exist."""


class Conflict(APIError):
    """409: the request contradicts stored state (`error` says which: NameTaken, EmbeddingMissing, ...)."""


class PayloadTooLarge(APIError):
    """413: too many bytes or items in one request."""


class InvalidInput(APIError):
    """422: the request's content is invalid; `detail` names the field."""


class ServerError(APIError):
    """5xx other than 503: quote `request_id` to the operator."""


class ServiceUnavailable(ServerError):
    """503: a dependency (vector index, database) is unavailable."""


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    503: ServiceUnavailable,
}


def from_response(response: httpx.Response) -> APIError:
    """The typed exception for an error response (any body: a proxy's HTML page still gives a message)."""
    status = response.status_code
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    body: Any = None
    with contextlib.suppress(ValueError):  # not JSON: a proxy's error page
        body = response.json()
    header_id = response.headers.get("x-request-id")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = body.get("detail")
        rid = body.get("request_id")
        return cls(
            status,
            body["error"],
            detail if isinstance(detail, str) else str(detail),
            rid if isinstance(rid, str) else header_id,
        )
    text = response.text.strip()[:500] or response.reason_phrase
    return cls(status, f"HTTP{status}", text, header_id)
