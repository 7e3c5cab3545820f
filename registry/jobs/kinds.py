"""The registry of job kinds: what runs for a kind, its parameters' model and the scope it needs.

The registry is open: any module registers a kind with `register_kind` (the composition root calls
the registrations at startup: `api.jobs.install`). A kind's parameters are a pydantic model, so bad
parameters are refused when the job is submitted (422), not discovered by a failed job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from registry.errors import InvalidInput
from registry.ports import JobHandle
from registry.services.context import Context

Handler = Callable[[Context, JobHandle], dict[str, Any]]
KindScope = Literal["admin", "write"]


class NoParams(BaseModel):
    """A kind that takes no parameters."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    params: type[BaseModel]
    scope: KindScope
    description: str
    # Extra checks at submit time that need more than the model (e.g. a path that must exist).
    check: Callable[[Any], None] | None = None


_KINDS: dict[str, JobKind] = {}
_LOCK = threading.Lock()


def register_kind(
    kind: str,
    handler: Handler,
    *,
    params: type[BaseModel] = NoParams,
    scope: KindScope = "admin",
    description: str = "",
    check: Callable[[Any], None] | None = None,
) -> JobKind:
    """Register (or replace) the handler of `kind`.

    `handler(ctx, job)` runs in a worker thread; it reports with `job.progress(stage, done, total)`
    and `job.log(message)` (either raises JobCancelled once a cancel was requested), reads its
    parameters from `job.params` (already valid for `params`) and returns a JSON-serialisable dict,
    the job's result. A job whose worker died is run again with `job.attempt` > 1: the handler must
    either resume or start over without leaving SQL and vectors inconsistent.
    """
    if not kind or len(kind) > 32 or not kind.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"job kind {kind!r}: 1-32 letters, digits, '-' or '_'")
    entry = JobKind(kind, handler, params, scope, description or (handler.__doc__ or "").strip(), check)
    with _LOCK:
        _KINDS[kind] = entry
    return entry


def unregister_kind(kind: str) -> None:
    """Forget a kind (tests)."""
    with _LOCK:
        _KINDS.pop(kind, None)


def known_kinds() -> list[JobKind]:
    with _LOCK:
        return sorted(_KINDS.values(), key=lambda k: k.name)


def get_kind(kind: str) -> JobKind:
    """The registered kind, or InvalidInput naming the known ones."""
    with _LOCK:
        found = _KINDS.get(kind)
        names = sorted(_KINDS)
    if found is None:
        raise InvalidInput(f"unknown job kind {kind!r}; this server runs: {', '.join(names) or 'none'}")
    return found


def validate_params(kind: JobKind, params: dict[str, Any]) -> BaseModel:
    """The parameters as the kind's model (InvalidInput naming each bad field), after its check."""
    try:
        model = kind.params.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            f"params.{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"job kind {kind.name!r}: {problems}") from None
    if kind.check is not None:
        kind.check(model)
    return model
