"""Decisions restricted to evaluations of one provenance (`registry.services.provenance` explains how).

A decision given an `EvaluationFilter` compares models by vectors re-embedded from only their
evaluations of that provenance and reads shared-question scores of that provenance only; its response
carries `provenance` (a `ProvenanceUsed`), and each model brief's `n_evaluations` / `provisional` then
describe the re-embedded vector, not the stored one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from registry.decisions.schemas import ModelBrief
from registry.decisions.service.pool import Pool, require_models
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter
from registry.services.common import settle_with
from registry.services.context import Context
from registry.services.provenance import ProvenanceVectors, provenance_vectors, restricting

__all__ = ["ProvenanceVectors", "finish", "provenance_pool", "provenance_vectors", "restricting"]

R = TypeVar("R", bound=BaseModel)

# Parts of the decisions that are not restricted, stated in the response rather than left implicit.
THRESHOLDS = "verdict thresholds and tolerance: calibrated on all the registry's evaluations"
REFERENCE = "reference queries for predicted accuracy/agreement: as requested (default: registry questions)"


def provenance_pool(
    ctx: Context, model_flt: ModelFilter | None, flt: EvaluationFilter, *, must: Sequence[uuid.UUID] = ()
) -> tuple[Pool, ProvenanceVectors]:
    """The models matching `model_flt` with evaluations of `flt` (plus `must`), re-embedded from those."""
    pv = provenance_vectors(ctx, flt, model_flt, must=must)
    rows = require_models(ctx, pv.ids)
    return Pool(ids=list(pv.ids), vectors=pv.vectors, rows=[rows[m] for m in pv.ids]), pv


def finish(read: R, pv: ProvenanceVectors | None, unrestricted: Sequence[str] = ()) -> R:
    """`read` with its `provenance` set and every model brief describing the re-embedded vector."""
    if pv is None:
        return read
    out: R = _restate(read, pv.counts)
    return out.model_copy(update={"provenance": pv.used(unrestricted)})


def _restate(value: Any, counts: dict[uuid.UUID, int]) -> Any:
    if isinstance(value, ModelBrief):
        n = counts.get(value.id)
        if n is None:
            return value
        return value.model_copy(update={"n_evaluations": n, "provisional": settle_with(n) is not None})
    if isinstance(value, BaseModel):
        changed = {}
        for name in type(value).model_fields:
            old = getattr(value, name)
            new = _restate(old, counts)
            if new is not old:
                changed[name] = new
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, list):
        items = [_restate(v, counts) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value
