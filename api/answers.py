"""A per-process cache of whole answers to the repeated reads `similar` and `fallbacks`, in front of
FastAPI's routing, dependencies and validation.

Why: a cached `similar` spent most of its time outside the service: routing, solving eighteen query
parameters, three thread-pool hops (the key check, the handler, response validation) and serialising the
same answer again. Here a repeated request costs one thread-pool hop: the caller's key is checked and the
registry's change counters read in one session (`registry.services.answer_state`), and the stored bytes
go back when the encoder, the counters, the path and the query string are those of a stored answer.

Correctness rests on the counters (`registry.services.answers`): they are read before the answer is
computed, and every write a read can depend on bumps them in its own transaction, so an answer stored
under counters is what any worker computes while they stay the same; the first request under other
counters (or another encoder) drops every stored answer. Only 200 answers are stored, and only when the
handler ran on the encoder the key names. A request this cache does not answer (another path, a malformed
or failing key, before the app has started) goes through the app unchanged, so errors keep their one shape
and origin.

A first ask in the shape nearly every caller sends (the model's id in canonical form, at most `k` and
`rank_by` in the query, within the handler's bounds) is computed here too, by calling the handler itself
with the filters its dependencies give for no parameters, and stored: the miss costs one more thread-pool
hop instead of FastAPI's routing, dependencies, three hops and response validation (through the ASGI app at
10,000 models, warmed, timed by hand: 5.1-5.3 ms per first ask before, 4.6-4.7 after, 2.7-3.1 ms for the
service call alone).
Anything else, and any failure of that call, goes to the app, which answers (or refuses) as it always does;
`tests/api/test_answers.py` checks the bytes are the app's own.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Container, encoder_tag, model_filter
from api.routes import decisions as decision_routes
from api.routes import models as models_routes
from api.routes.imports import provenance_filter
from registry import services
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter

# GET reads whose answer depends only on the registry's data, the encoder and the request's path and query.
CACHED = re.compile(r"/v1/models/([0-9A-Fa-f-]{32,36})/(similar|fallbacks)")

_Key = tuple[str, tuple[int, int, int]]

# What a first ask computed here may hold: per read, the default and bounds of `k` (as the handlers declare
# them); `rank_by` may be either value. Any other parameter, or a value outside these, goes to the app.
SIMPLE_K = {"similar": (10, 1, 1000), "fallbacks": (5, 1, 100)}
_DIGITS = re.compile(r"[1-9][0-9]{0,3}")


def simple_request(
    path: str, query_string: bytes
) -> tuple[str, uuid.UUID, int, Literal["behaviour", "embedding"]] | None:
    """(read, model id, k, rank_by) when the request is one a first ask may be computed for here (see the
    module doc), else None."""
    match = CACHED.fullmatch(path)
    if match is None:
        return None
    segment, read = match.groups()
    try:
        model_id = uuid.UUID(segment)
    except ValueError:
        return None
    if str(model_id) != segment:  # only the canonical form: the app judges any other
        return None
    k, low, high = SIMPLE_K[read]
    rank_by: Literal["behaviour", "embedding"] = "behaviour"
    try:
        params = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    if len({name for name, _ in params}) != len(params):
        return None
    for name, value in params:
        if name == "k" and _DIGITS.fullmatch(value) and low <= int(value) <= high:
            k = int(value)
        elif name == "rank_by" and value in ("behaviour", "embedding"):
            rank_by = "behaviour" if value == "behaviour" else "embedding"
        else:
            return None
    return read, model_id, k, rank_by


class AnswerStore:
    """The stored answers (bodies at most `max_bytes`, least recently used dropped first) with the
    encoder and counters they were computed under, and how many requests were answered from them (hits) or
    computed (misses), for `/metrics`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.key: _Key | None = None
        self.answers: OrderedDict[tuple[str, bytes], tuple[list[tuple[bytes, bytes]], bytes]] = OrderedDict()
        self.bytes = 0  # of the stored bodies
        self.hits = 0
        self.misses = 0

    def current(self, key: _Key) -> None:
        """Make `key` the one answers are stored under: every answer of another key is dropped."""
        if key != self.key:
            self.key = key
            self.answers.clear()
            self.bytes = 0

    def get(self, request: tuple[str, bytes]) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        hit = self.answers.get(request)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self.answers.move_to_end(request)
        return hit

    def put(
        self, key: _Key, request: tuple[str, bytes], headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Store an answer computed under `key`, unless a request has seen newer counters meanwhile."""
        if self.key != key or request in self.answers or len(body) > self.max_bytes:
            return
        self.answers[request] = (headers, body)
        self.bytes += len(body)
        while self.bytes > self.max_bytes:
            self.bytes -= len(self.answers.popitem(last=False)[1][1])


class AnswerCache:
    """Answer a repeated `similar`/`fallbacks` request from the bytes of its earlier answer (see the
    module doc), kept in `store`."""

    def __init__(self, app: ASGIApp, store: AnswerStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        store = self.store
        if (
            store.max_bytes == 0
            or scope["type"] != "http"
            or scope["method"] != "GET"
            or not CACHED.fullmatch(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        container: Container | None = getattr(scope["app"].state, "container", None)
        bound = container.fresh() if container is not None else None
        plain, token = _bearer(scope)
        if bound is None or not plain:
            await self.app(scope, receive, send)
            return
        try:
            counters = await run_in_threadpool(
                services.answer_state, bound, token, "read", open_reads=bound.settings.open_reads
            )
        except Exception:  # a refused key, or the database failing: the app answers with its own error
            counters = None
        if counters is None:
            await self.app(scope, receive, send)
            return
        key = (encoder_tag(bound), counters)
        store.current(key)
        request = (scope["path"], scope["query_string"])
        hit = store.get(request)
        if hit is not None:
            scope.setdefault("state", {})["encoder"] = key[0]
            headers, body = hit
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        simple = simple_request(scope["path"], scope["query_string"])
        if simple is not None:
            try:
                # the filters the handler's own dependencies give for no parameters
                flt, provenance = await model_filter(), await provenance_filter()
                computed = await run_in_threadpool(_compute, bound, *simple, flt, provenance)
            except Exception:  # the app answers: an unknown model's 404, a failing read's 503 or 500
                computed = None
            if computed is not None:
                scope.setdefault("state", {})["encoder"] = key[0]
                headers = [
                    (b"content-length", str(len(computed)).encode()),
                    (b"content-type", b"application/json"),
                ]
                store.put(key, request, headers, computed)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": computed})
                return
        start: Message | None = None
        chunks: list[bytes] = []
        complete = False

        async def keep(message: Message) -> None:
            nonlocal start, complete
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                complete = not message.get("more_body", False)
            await send(message)

        await self.app(scope, receive, keep)
        if (
            start is not None
            and start["status"] == 200
            and complete
            and scope.get("state", {}).get("encoder") == key[0]  # the handler ran on the key's encoder
        ):
            store.put(key, request, list(start.get("headers", [])), b"".join(chunks))


def _compute(
    bound: Container,
    read: str,
    model_id: uuid.UUID,
    k: int,
    rank_by: Literal["behaviour", "embedding"],
    flt: ModelFilter,
    provenance: EvaluationFilter,
) -> bytes:
    """The handler's own answer to these parameters (the key was checked already), as JSON bytes."""
    handler: Any = {"similar": models_routes.similar_models, "fallbacks": decision_routes.get_fallbacks}[read]
    answer: BaseModel = handler(
        model_id=model_id, container=bound, _=None, flt=flt, provenance=provenance, k=k, rank_by=rank_by
    )
    return answer.model_dump_json().encode()


def _bearer(scope: Scope) -> tuple[bool, str | None]:
    """(plain, token): the request's Bearer token (None without an Authorization header), split as
    FastAPI's `HTTPBearer` splits it; plain is False for any other form of the header, which is left to
    the app's own key check."""
    header = Headers(scope=scope).get("authorization")
    if header is None:
        return True, None
    scheme, token = get_authorization_scheme_param(header)
    plain = scheme.lower() == "bearer" and bool(token) and " " not in token
    return plain, token if plain else None


def install(app: Any, megabytes: float) -> None:
    """Put the cache inside the app's other middleware (request ids, metrics), which then see its answers;
    its store is `app.state.answer_cache` (read by `/metrics`)."""
    app.state.answer_cache = store = AnswerStore(int(megabytes * 1_000_000))
    app.add_middleware(AnswerCache, store=store)
