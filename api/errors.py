"""The one table from domain errors to HTTP statuses, and handlers giving every error one body shape:
`{"error": "<ClassName>", "detail": "<what to fix>"}`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.errors import (
    Conflict,
    Forbidden,
    IndexUnavailable,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RegistryError,
    Unauthenticated,
)

# Looked up along the exception's MRO, so subclasses (also the decisions package's) inherit a status.
STATUS: dict[type[RegistryError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unauthenticated: 401,
    Forbidden: 403,
    IndexUnavailable: 503,
    RegistryError: 400,
}


def status_for(exc: RegistryError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


class ErrorBody(BaseModel):
    """Every error answers with this body."""

    error: str = Field(description="the error's class, e.g. ValidationError, NotFound, NameTaken")
    detail: str = Field(description="what went wrong and what to fix")
    request_id: str | None = Field(
        default=None, description="this request's id (also in the X-Request-ID header); quote it in reports"
    )


# Declared on every route of the app, so clients (and the fuzz tests) know the shape of each error status.
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "bad request",
        401: "missing or unknown API key",
        403: "the API key lacks the scope",
        404: "not found",
        409: "conflict with the registry's state",
        413: "request body or item count too large",
        422: "invalid input; `detail` names the field",
        500: "unexpected server error (quote the request id)",
        503: "a dependency is unavailable",
    }.items()
}


def _printable(text: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8: escape them rather than fail while reporting an error.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(error: str, detail: str, request_id: str | None = None) -> dict[str, str]:
    body = {"error": error, "detail": _printable(detail)}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def _rid(request: Request) -> str | None:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else None


def _where(loc: Sequence[Any], body: Any) -> str:
    """`body.evaluations[3] (question 'q7').score` from a pydantic error location."""
    out = ""
    node = body
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict):
                label = node.get("question") or node.get("key") or node.get("name")
                if isinstance(label, str):
                    out += f" ({label!r})"
        else:
            out += f".{part}" if out else str(part)
            if part != "body":
                node = node.get(part) if isinstance(node, dict) else None
    return out


def _validation_detail(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = e.get("ctx") or {}
        return "MalformedJSON", f"request body is not valid JSON: {ctx.get('error', e.get('msg'))}"
    parts = []
    for e in errors[:10]:
        where = _where(e.get("loc", ()), exc.body)
        got = e.get("input")
        shown = (
            ""
            if isinstance(got, dict | list) or got is None
            else f" (got {json.dumps(got, default=str)[:80]})"
        )
        parts.append(f"{where}: {e.get('msg')}{shown}")
    more = f"; and {len(errors) - 10} more problems" if len(errors) > 10 else ""
    return "ValidationError", "; ".join(parts) + more


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""

    @app.exception_handler(RegistryError)
    async def _registry(request: Request, exc: RegistryError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(
            error_body(type(exc).__name__, exc.detail, _rid(request)), status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        name, detail = _validation_detail(exc)
        return JSONResponse(error_body(name, detail, _rid(request)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        return JSONResponse(
            error_body(names.get(exc.status_code, "HTTPError"), str(exc.detail), _rid(request)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
