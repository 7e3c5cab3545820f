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
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Container, encoder_tag
from registry import services

# GET reads whose answer depends only on the registry's data, the encoder and the request's path and query.
CACHED = re.compile(r"/v1/models/[0-9A-Fa-f-]{32,36}/(similar|fallbacks)")

_Key = tuple[str, tuple[int, int, int]]


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
