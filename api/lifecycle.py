"""Encoder lifecycle job kinds: `reindex`, `promote`, `rollback` (and `train`, `api.training`).

They live in the composition root because switching encoders loads checkpoints (torch); the work
itself is `registry.services.encoders.switch_to`. Each runs in a job worker while the API keeps
answering from the encoder in service until the switch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.deps import Container
from api.serving import EmbedderCache
from registry.jobs.kinds import register_kind
from registry.ports import JobHandle
from registry.services import encoders
from registry.services.context import Context

Handler = Callable[[Context, JobHandle], dict[str, Any]]
GRACE_S = 3.0  # the longest request a switch waits for before its last catch-up


class PromoteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encoder_id: uuid.UUID = Field(description="a registered encoder (GET /v1/encoders)")


class RebuildParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def serving_context(ctx: Context) -> tuple[Context, EmbedderCache | None, Any]:
    """The context bound to the encoder in service, its checkpoint loader and the switch to refresh.

    In the API the container's serving switch answers; elsewhere (a bare worker process) the serving
    row in SQL does, so a job re-run by another process starts from what serves now."""
    if isinstance(ctx, Container) and ctx.serving is not None:
        switch = ctx.serving
        return switch.current(), getattr(switch, "loader", None), switch.refresh
    try:
        row = encoders.serving_encoder(ctx)
    except encoders.EncoderBusy:
        return ctx, None, None
    cache = EmbedderCache(ctx.embedder, getattr(ctx.embedder, "query_encoder", None))
    emb = cache.get(row.fingerprint) or cache(row.path)
    return encoders.bound_to(ctx, row.fingerprint, row.generation, emb), cache, None


def loader_for(ctx: Context, cache: EmbedderCache | None) -> encoders.EmbedderLoader:
    if cache is not None:
        return cache
    query = getattr(ctx.embedder, "query_encoder", None)
    return EmbedderCache(ctx.embedder, query)


def reindex(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Rebuild every vector of the serving encoder from SQL into a new generation, then switch to it."""
    cur, cache, refresh = serving_context(ctx)
    row = encoders.serving_encoder(cur)
    report = encoders.switch_to(
        cur, row.id, loader_for(cur, cache), job, rebuild=True, on_switch=refresh, grace_s=GRACE_S
    )
    return report.model_dump(mode="json")


def promote(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Build a registered encoder's collections from SQL beside the ones in service, then switch to it."""
    cur, cache, refresh = serving_context(ctx)
    target = uuid.UUID(str(job.params["encoder_id"]))
    report = encoders.switch_to(cur, target, loader_for(cur, cache), job, on_switch=refresh, grace_s=GRACE_S)
    return report.model_dump(mode="json")


def rollback(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Switch back to the encoder that served before (its collections are caught up, not rebuilt)."""
    cur, cache, refresh = serving_context(ctx)
    previous = encoders.previous_encoder(cur)
    report = encoders.switch_to(
        cur, previous.id, loader_for(cur, cache), job, on_switch=refresh, grace_s=GRACE_S
    )
    return report.model_dump(mode="json")


def install() -> None:
    """Register the lifecycle kinds (idempotent)."""
    register_kind("reindex", reindex, params=RebuildParams, scope="admin")
    register_kind("promote", promote, params=PromoteParams, scope="admin")
    register_kind("rollback", rollback, params=RebuildParams, scope="admin")
