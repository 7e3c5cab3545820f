"""Per-request context: a request id on every response and error body, one structured log line per
request, and a last-resort handler so an unexpected exception still answers in the JSON error shape.

A pure ASGI middleware (not `BaseHTTPMiddleware`): it adds no task or queue per request, and it sits
outside every other middleware of the app so that it also sees their responses and failures.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from registry import db

HEADER = b"x-request-id"
# The encoder (and collection build) that answered: `<fingerprint>/g<generation>`, on every response whose
# handler read the registry, so a client can tell which encoder answered across a promotion.
ENCODER_HEADER = b"x-locus-encoder"
# An incoming id is kept only when it is short and plain (it ends up in logs and response headers).
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

access_log = logging.getLogger("locus_registry.access")
error_log = logging.getLogger("locus_registry.error")

# The id of the request being served, for log records written while serving it (sync handlers run in
# worker threads; anyio copies the context into them).
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id_of(scope: Scope) -> str | None:
    """The id the middleware gave this request (None outside the middleware)."""
    state = scope.get("state")
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == HEADER:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _SANE_ID.fullmatch(text) else None
    return None


class RequestContext:
    """Give each HTTP request an id (the client's `X-Request-ID` when sane, else a new one), echo it in
    the `X-Request-ID` response header, log one JSON line when the request ends, and turn an exception
    that escaped every handler into a 500 in the registry's error shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        # A copy of the scope with its own state: the server's state dict may be shared between requests.
        scope = {**scope, "state": {**(scope.get("state") or {}), "request_id": rid}}
        token = current_request_id.set(rid)
        read_token = db.reading.set(scope.get("method") in ("GET", "HEAD"))  # replica-eligible
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                headers.append((HEADER, rid.encode()))
                encoder = scope["state"].get("encoder")  # set by api.deps.get_container
                if encoder:
                    headers.append((ENCODER_HEADER, str(encoder).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unhandled error request_id=%s", rid)
            if status:  # the response has begun: nothing sane can be sent any more
                raise
            await _send_500(send_with_id, rid)
        finally:
            db.reading.reset(read_token)
            access_log.info(  # before the id is reset, so that the line's prefix carries it too
                json.dumps(
                    {
                        "event": "request",
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": rid,
                    }
                )
            )
            current_request_id.reset(token)


async def _send_500(send: Send, rid: str) -> None:
    body = json.dumps(
        error_body(
            "InternalError",
            f"the server failed on this request; report request id {rid} to the operator",
            rid,
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or "-") to every record, for formats that show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


def configure_logging(level: str) -> None:
    """One line per record on stderr for the registry's loggers (the server configures its own). They stop
    there: the console script also configures the root logger, which printed every line a second time."""
    logger = logging.getLogger("locus_registry")
    logger.setLevel(level.upper())
    logger.propagate = False
    if not any(getattr(h, "_locus", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
        handler.addFilter(RequestIdFilter())
        handler._locus = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
