"""Dependency wiring: the container on `app.state`, authentication, shared query parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from registry import services
from registry.errors import InvalidInput
from registry.ports import ModelFilter
from registry.schemas import ApiKeyRead, Label, Scope, Status
from registry.services import Context
from registry.settings import Settings


class ServingResolver(Protocol):
    """Gives the container bound to the encoder in service (`api.serving.ServingSwitch`)."""

    def current(self) -> Container: ...

    def fresh(self) -> Container | None: ...

    def refresh(self) -> None: ...


@dataclass
class Container(Context):
    """The app's collaborators: a registry `Context` (pass it to services) plus settings and engine.

    With `serving` set (the built app), each request gets the container bound to the encoder in
    service at that moment (`get_container`); without it (tests' own containers) this one answers."""

    settings: Settings = field(kw_only=True)
    engine: Engine | None = field(default=None, kw_only=True)
    read_engine: Engine | None = field(default=None, kw_only=True)
    serving: ServingResolver | None = field(default=None, kw_only=True)

    def current(self) -> Container:
        """The container bound to the encoder in service now (one snapshot per request)."""
        return self.serving.current() if self.serving is not None else self

    def fresh(self) -> Container | None:
        """`current()` when it needs no I/O (checked within the serving TTL), else None."""
        return self.serving.fresh() if self.serving is not None else self

    def close(self) -> None:
        """Release the index (frees the local-mode lock) and the database pool."""
        close = getattr(self.index, "close", None)
        if close is not None:
            close()
        for engine in (self.engine, self.read_engine):
            if engine is not None:
                engine.dispose()


async def get_container(request: Request) -> Container:
    """The container built in the app's lifespan, bound to the encoder in service for this request.

    Within the serving TTL the snapshot is a memory read, done on the event loop; otherwise resolving it
    reads SQL and may load an encoder (after a switch), which runs in the thread pool so that it never
    blocks the loop. (A plain `def` cost every request a thread-pool hop for what is nearly always a
    memory read.) The other dependencies that do no I/O (`model_filter`, `reject_unknown_query`,
    `provenance_filter`) are `async def` for the same reason."""
    container: Container = request.app.state.container
    bound = container.fresh()
    if bound is None:
        bound = await run_in_threadpool(container.current)
    request.state.encoder = encoder_tag(bound)
    return bound


def encoder_tag(bound: Container) -> str:
    """`<fingerprint>/g<generation>`: the encoder and collection build that answer (the X-Locus-Encoder
    header)."""
    return f"{bound.embedder.fingerprint}/g{getattr(bound.index, 'generation', 0)}"


ContainerDep = Annotated[Container, Depends(get_container)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `locus-registry keys create`.")


def require(scope: Scope) -> Any:
    """A dependency that admits requests whose Bearer key grants `scope` (reads may be open)."""

    def check(
        container: ContainerDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKeyRead | None:
        key = creds.credentials if creds is not None else None
        if key is None and scope == "read" and container.settings.open_reads:
            return None
        return services.authenticate(container, key, scope)

    return check


ReadAuth = Annotated[ApiKeyRead | None, Depends(require("read"))]
WriteAuth = Annotated[ApiKeyRead | None, Depends(require("write"))]
AdminAuth = Annotated[ApiKeyRead | None, Depends(require("admin"))]


async def model_filter(
    status: Annotated[list[Status] | None, Query(description="any of these statuses")] = None,
    provider: Annotated[list[Label] | None, Query(description="any of these providers")] = None,
    family: Annotated[list[Label] | None, Query()] = None,
    license: Annotated[list[Label] | None, Query()] = None,
    tag: Annotated[list[Label] | None, Query(description="every one of these tags")] = None,
    min_params: Annotated[float | None, Query(ge=0, description="billions")] = None,
    max_params: Annotated[float | None, Query(ge=0, description="billions")] = None,
    min_context_window: Annotated[int | None, Query(ge=0)] = None,
    max_input_price: Annotated[float | None, Query(ge=0, description="USD per million tokens")] = None,
    max_output_price: Annotated[float | None, Query(ge=0, description="USD per million tokens")] = None,
) -> ModelFilter:
    """Model filters shared by listing, similarity and decision endpoints."""
    return ModelFilter(
        statuses=tuple(status or ()),
        providers=tuple(provider or ()),
        families=tuple(family or ()),
        licenses=tuple(license or ()),
        tags=tuple(tag or ()),
        min_params=min_params,
        max_params=max_params,
        min_context_window=min_context_window,
        max_input_price=max_input_price,
        max_output_price=max_output_price,
    )


FilterDep = Annotated[ModelFilter, Depends(model_filter)]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


class UnknownParameter(InvalidInput):
    """A query parameter the endpoint does not take (a typo would otherwise be ignored silently)."""


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:  # a handful per route: cheaper than any cache keyed on it
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not declare, as bodies refuse unknown fields: an ignored
    `?providr=acme` would silently answer for every provider."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _query_names(dependant)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) if allowed else "none"
        raise UnknownParameter(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; this endpoint takes: {takes}"
        )
