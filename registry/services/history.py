"""Embedding history: every (re-)embedding of a model, by which encoder, from how many evaluations, why.

`record_embeddings` is called inside the transaction that writes the vectors (`common.embed_rows` for
registration, new evaluations, imports and reindexing; the encoder promotion for `promote`), so a
history row exists exactly when its vector was committed. It costs one read of the models' latest
history vectors, one bulk insert and, only for models past `KEEP_PER_ENCODER` rows, one delete.

Distances are Euclidean, between a vector and the model's previous vector under the *same* encoder
(vectors of two encoders live in different spaces and are never compared). To read them, the history
also gives them relative to the registry's nearest-neighbour scale: the median distance from a model
to its nearest registered neighbour under the serving encoder. A move of 0.5 on that scale is half the
way to where a typical model's closest other model sits.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry import repositories_lifecycle as lrepo
from registry.errors import InvalidInput, NotFound
from registry.schemas import HistoryEntryRead, HistoryRead, HistorySummaryRead
from registry.services.context import Context
from registry.tables import EmbeddingHistoryRow, utcnow

EmbeddingReason = Literal["register", "evaluations", "outcome", "import", "reindex", "promote", "probe"]
REASONS: tuple[str, ...] = get_args(EmbeddingReason)
KEEP_PER_ENCODER = 100  # history rows kept per model and encoder (the oldest are pruned)
SCALE_SAMPLE = 1_000  # models whose nearest neighbour the scale is read from

WHY = {
    "register": "registered",
    "evaluations": "new evaluations",
    "outcome": "route outcomes",
    "import": "imported scores",
    "reindex": "reindexed",
    "promote": "a new encoder was promoted",
    "probe": "a re-probe",
}


def record_embeddings(
    s: Session,
    fingerprint: str,
    items: Sequence[tuple[uuid.UUID, np.ndarray, int]],
    reason: EmbeddingReason,
    *,
    previous: Mapping[uuid.UUID, np.ndarray] | None = None,
    keep: int = KEEP_PER_ENCODER,
) -> None:
    """Record one history row per (model_id, vector, n_evaluations) embedded by encoder `fingerprint`.

    Call it inside the transaction that writes the vectors (it flushes, never commits). `distance_prev`
    is the Euclidean distance to the model's previous vector under the same encoder (None: the first):
    its latest history row other than a probe's, or the vector `previous` gives for it. A `probe` row
    holds the embedding of a re-probe's scores (the model's vector is not changed by it).
    """
    if reason not in REASONS:
        raise InvalidInput(f"unknown embedding reason {reason!r}: one of {', '.join(REASONS)}")
    if not items:
        return
    latest = lrepo.latest_history(s, [m for m, _, _ in items], fingerprint)
    now = utcnow()
    rows = []
    full = []
    for model_id, vector, n in items:
        v = np.asarray(vector, dtype=np.float64)
        prev = latest.get(model_id)
        before = previous.get(model_id) if previous is not None else None
        if before is None and prev is not None and prev[0] is not None:
            before = np.asarray(prev[0], dtype=np.float64)
        dist = None
        if before is not None and len(before) == len(v):
            dist = float(np.linalg.norm(v - np.asarray(before, dtype=np.float64)))
        rows.append(
            {
                "id": uuid.uuid4(),
                "model_id": model_id,
                "fingerprint": fingerprint,
                "n_evaluations": int(n),
                "reason": reason,
                "vector": [float(x) for x in v],
                "distance_prev": dist,
                "created_at": now,
            }
        )
        if prev is not None and prev[1] + 1 > keep:
            full.append(model_id)
    lrepo.add_history(s, rows)
    if full:
        lrepo.prune_history(s, full, fingerprint, keep)


_scale_cache: dict[tuple[object, ...], float | None] = {}
_scale_lock = threading.Lock()


def neighbour_scale(ctx: Context) -> float | None:
    """The median Euclidean distance from a model to its nearest other model under the serving encoder
    (read on up to SCALE_SAMPLE models, cached per registry state); None with fewer than two models."""
    with ctx.session_factory() as s:
        key = (id(ctx.session_factory), ctx.embedder.fingerprint, repo.registry_version(s))
    with _scale_lock:
        if key in _scale_cache:
            return _scale_cache[key]
    ids, vecs = ctx.index.scan_models(None)
    scale = None
    if len(ids) >= 2:
        x = np.asarray(vecs, dtype=np.float64)  # (N, E)
        pick = np.arange(len(ids))
        if len(ids) > SCALE_SAMPLE:
            pick = np.sort(np.random.default_rng(0).choice(len(ids), SCALE_SAMPLE, replace=False))
        sq = (x * x).sum(1)  # (N,)
        nearest = []
        for start in range(0, len(pick), 256):  # blocks keep the distance matrix small (256 x N)
            rows = pick[start : start + 256]
            d2 = sq[rows][:, None] + sq[None, :] - 2.0 * x[rows] @ x.T  # (B, N)
            d2[np.arange(len(rows)), rows] = np.inf  # not a model's own neighbour
            nearest.append(np.sqrt(np.maximum(d2.min(axis=1), 0.0)))
        scale = float(np.median(np.concatenate(nearest)))
        if not np.isfinite(scale) or scale <= 0:
            scale = None
    with _scale_lock:
        _scale_cache.clear()  # one registry state at a time is enough
        _scale_cache[key] = scale
    return scale


def _relative(d: float | None, scale: float | None) -> float | None:
    return None if d is None or scale is None else d / scale


def model_history(ctx: Context, model_id: uuid.UUID, *, limit: int = 50, offset: int = 0) -> HistoryRead:
    """A page of a model's embeddings (newest first) and a summary of how far it moved under the
    serving encoder, and why."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput(f"limit must be 1-1000 and offset >= 0, got {limit} and {offset}")
    serving = ctx.embedder.fingerprint
    with ctx.session_factory() as s:
        if not repo.model_exists(s, model_id):
            raise NotFound(f"model {model_id} does not exist")
        page, total = lrepo.list_history(s, model_id, limit=limit, offset=offset)
        under = lrepo.history_under(s, model_id, serving)
        encoders = lrepo.history_encoders(s, model_id)
    scale = neighbour_scale(ctx)
    return HistoryRead(
        model_id=model_id,
        fingerprint=serving,
        neighbour_scale=scale,
        summary=summarise(under, serving, scale, [fp for fp, _, _ in encoders]),
        items=[
            HistoryEntryRead(
                fingerprint=r.fingerprint,
                serving=r.fingerprint == serving,
                n_evaluations=r.n_evaluations,
                reason=r.reason,
                created_at=r.created_at,
                distance_prev=r.distance_prev,
                relative_prev=_relative(r.distance_prev, scale) if r.fingerprint == serving else None,
            )
            for r in page
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


def summarise(
    rows: Sequence[EmbeddingHistoryRow], serving: str, scale: float | None, encoders: Sequence[str]
) -> HistorySummaryRead:
    """How far the model moved under the serving encoder (first -> latest, and the path), and why."""
    others = [fp for fp in encoders if fp != serving]
    probes = [r for r in rows if r.reason == "probe"]
    rows = [r for r in rows if r.reason != "probe"]
    probe_note = ""
    if probes:
        last_probe = probes[-1]
        rel_p = _relative(last_probe.distance_prev, scale)
        probe_note = f"; {len(probes)} re-probe(s), the latest embedded " + (
            "with no vector to compare"
            if last_probe.distance_prev is None
            else f"{last_probe.distance_prev:.3f}"
            + ("" if rel_p is None else f" ({rel_p:.2f}x)")
            + " from the model's vector"
        )
    if not rows:
        why = "no embedding recorded under the serving encoder"
        if others:
            why += f" (history under {len(others)} other encoder(s); a reindex or promotion records one)"
        return HistorySummaryRead(
            embeddings=0, probes=len(probes), other_encoders=len(others), why=why + probe_note
        )
    first, last = rows[0], rows[-1]
    net = float(np.linalg.norm(np.asarray(last.vector, np.float64) - np.asarray(first.vector, np.float64)))
    path = float(sum(r.distance_prev or 0.0 for r in rows))
    reasons: dict[str, int] = {}
    moved_by: dict[str, float] = {}
    for r in rows[1:]:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
        moved_by[r.reason] = moved_by.get(r.reason, 0.0) + (r.distance_prev or 0.0)
    if len(rows) == 1:
        why = f"embedded once ({WHY.get(first.reason, first.reason)}, {first.n_evaluations} evaluations)"
    else:
        main = max(moved_by, key=lambda k: (moved_by[k], k))
        rel = _relative(net, scale)
        why = (
            f"{len(rows)} embeddings from {first.n_evaluations} to {last.n_evaluations} evaluations; moved "
            f"{net:.3f} in total"
            + ("" if rel is None else f" ({rel:.2f}x the typical nearest-neighbour distance)")
            + f", mostly by {WHY.get(main, main)} ({moved_by[main]:.3f} of a {path:.3f} path)"
        )
    return HistorySummaryRead(
        embeddings=len(rows),
        first_at=first.created_at,
        last_at=last.created_at,
        n_evaluations_first=first.n_evaluations,
        n_evaluations_last=last.n_evaluations,
        net_distance=net,
        net_relative=_relative(net, scale),
        path_length=path,
        reasons=reasons,
        moved_by=moved_by,
        probes=len(probes),
        other_encoders=len(others),
        why=why + probe_note,
    )
