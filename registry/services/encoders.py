"""The encoder lifecycle: registered encoders, promotion and rollback without downtime, reindex as a rebuild.

SQL is the source of truth for which encoder serves (`encoders.status = 'serving'`, with the build
`generation` of its collections); the Qdrant aliases `models_serving` / `questions_serving` mirror it
for anything that reads Qdrant directly. A request reads the serving (fingerprint, generation) once and
uses that encoder with those collections for everything it does, so it is answered by the old or the
new encoder, never a mix (`api.deps`).

A switch never edits the collections in service. It builds the target's next generation beside them
from SQL, catches up the models written meanwhile, flips the SQL row and the aliases in one step each,
waits out the requests still holding the old pair, then catches up once more (writes those requests
made went to the old collections; SQL has them). Each step is idempotent, so a job that dies is simply
run again: before the flip nothing in service changed; after it, the rerun rebuilds or catches up.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry import repositories_encoders as enc_repo
from registry.errors import Conflict, InvalidInput, NotFound
from registry.ports import Embedder, JobHandle, VectorIndex
from registry.schemas import EncoderRead, SwitchReport
from registry.services.common import embed_rows, index_write
from registry.services.context import Context
from registry.services.history import EmbeddingReason, record_embeddings
from registry.tables import EncoderRow, utcnow

log = logging.getLogger(__name__)


class EmbedderLoader(Protocol):
    """Loads encoder checkpoints (supplied by the composition root: registry has no torch)."""

    def __call__(self, path: str) -> Embedder:
        """The embedder of the checkpoint folder at `path`."""
        ...

    def get(self, fingerprint: str) -> Embedder | None:
        """An embedder already loaded in this process, by fingerprint."""
        ...


MODEL_BATCH = 16
QUESTION_BATCH = 2_048
# Requests resolve the serving encoder at most this often (api.deps); a switch waits this long, plus
# the longest request it expects, before its last catch-up.
SERVING_TTL_S = 1.0
CLOCK_MARGIN = dt.timedelta(seconds=5)  # replicas' clocks and in-flight transactions around a mark


class EncoderNotFound(NotFound):
    """No registered encoder has this id or fingerprint."""


class EncoderBusy(Conflict):
    """The encoder cannot be switched to from its current status (say which, and what to do)."""


def to_read(row: EncoderRow) -> EncoderRead:
    return EncoderRead.model_validate(row, from_attributes=True)


# ---------------------------------------------------------------- registered encoders


def ensure_serving(ctx: Context, path: str) -> EncoderRead:
    """At startup: the encoder in service per SQL. When none is recorded yet (a new registry, or one
    from before encoders were registered), the loaded encoder becomes it, with generation 0: the
    collections `models_<fp>` / `questions_<fp>` it has always used."""
    fp = ctx.embedder.fingerprint
    for _ in range(2):
        try:
            with ctx.session_factory() as s, s.begin():
                current = enc_repo.serving(s)
                if current is not None:
                    return to_read(current)
                row = enc_repo.by_fingerprint(s, fp)
                if row is None:
                    row = EncoderRow(
                        id=uuid.uuid4(), fingerprint=fp, path=path, status="serving", generation=0
                    )
                    s.add(row)
                else:
                    row.status = "serving"
                row.promoted_at = utcnow()
                s.flush()
                out = to_read(row)
            ctx.index.set_serving_alias()
            return out
        except Exception:
            # Another replica recorded it between our read and write (unique fingerprint): read theirs.
            log.info("serving encoder recorded concurrently; reading it again", exc_info=True)
    raise Conflict("could not record the serving encoder: try again")


def register_encoder(
    ctx: Context, path: str, loader: EmbedderLoader, *, report: dict[str, object] | None = None
) -> EncoderRead:
    """Register a checkpoint folder as a candidate (it is loaded once to check it and read its fingerprint).

    Registering the same checkpoint again returns the existing entry (with the report updated if given)."""
    try:
        emb = loader(path)
    except Exception as exc:
        raise InvalidInput(f"cannot load an encoder checkpoint from {path!r}: {exc}") from exc
    _check_compatible(ctx.embedder, emb)
    with ctx.session_factory() as s, s.begin():
        row = enc_repo.by_fingerprint(s, emb.fingerprint)
        if row is None:
            row = EncoderRow(
                id=uuid.uuid4(),
                fingerprint=emb.fingerprint,
                path=path,
                status="candidate",
                report=report or {},
            )
            s.add(row)
        elif report is not None:
            row.report = dict(report)
        s.flush()
        return to_read(row)


def _check_compatible(serving: Embedder, other: Embedder) -> None:
    if other.query_dim != serving.query_dim or other.query_model != serving.query_model:
        raise InvalidInput(
            f"the checkpoint encodes questions with {other.query_model} ({other.query_dim}-d), the registry "
            f"with {serving.query_model} ({serving.query_dim}-d): both must use the same query encoder"
        )


def list_encoders(ctx: Context) -> list[EncoderRead]:
    with ctx.session_factory() as s:
        return [to_read(r) for r in enc_repo.list_all(s)]


def get_encoder(ctx: Context, encoder_id: uuid.UUID) -> EncoderRead:
    with ctx.session_factory() as s:
        row = enc_repo.get(s, encoder_id)
        if row is None:
            raise EncoderNotFound(f"no encoder with id {encoder_id}")
        return to_read(row)


def serving_encoder(ctx: Context) -> EncoderRead:
    """The encoder in service."""
    with ctx.session_factory() as s:
        row = enc_repo.serving(s)
        if row is None:
            raise EncoderBusy("no encoder is recorded as serving: start the service once to record it")
        return to_read(row)


def previous_encoder(ctx: Context) -> EncoderRead:
    """The rollback target: the encoder that served before the current one."""
    with ctx.session_factory() as s:
        rows = enc_repo.by_status(s, "previous")
        if not rows:
            raise EncoderBusy("no previous encoder to roll back to: only one encoder has served so far")
        return to_read(max(rows, key=lambda r: r.promoted_at or r.created_at))


# ---------------------------------------------------------------- switching


@dataclass
class _Target:
    row_id: uuid.UUID
    fingerprint: str
    generation: int
    full_build: bool  # False: its collections are intact from when it served (rollback): catch up only
    since: dt.datetime | None  # catch-up from here when not a full build


def _plan(ctx: Context, encoder_id: uuid.UUID, *, rebuild: bool) -> tuple[_Target, EncoderRow]:
    with ctx.session_factory() as s:
        target = enc_repo.get(s, encoder_id)
        serving = enc_repo.serving(s)
        if target is None:
            raise EncoderNotFound(f"no encoder with id {encoder_id}")
        if serving is None:
            raise EncoderBusy("no encoder is recorded as serving: start the service once to record it")
        s.expunge_all()
    if target.id == serving.id:
        if not rebuild:
            raise EncoderBusy(f"encoder {target.fingerprint} is already serving: use reindex to rebuild it")
        return _Target(target.id, target.fingerprint, serving.generation + 1, True, None), serving
    if target.status == "previous" and not rebuild:
        return _Target(target.id, target.fingerprint, target.generation, False, serving.promoted_at), serving
    if target.status in ("candidate", "retired", "failed", "building", "previous"):
        return _Target(target.id, target.fingerprint, target.generation + 1, True, None), serving
    raise EncoderBusy(f"encoder {target.fingerprint} is {target.status}")


def switch_to(
    ctx: Context,
    encoder_id: uuid.UUID,
    loader: EmbedderLoader,
    handle: JobHandle,
    *,
    rebuild: bool = False,
    on_switch: Callable[[], None] | None = None,
    grace_s: float = 3.0,
) -> SwitchReport:
    """Build the encoder's collections beside the ones in service and switch to them (promote,
    rollback, or with `rebuild` a reindex of the serving encoder into a fresh generation)."""
    started = time.perf_counter()
    plan, serving = _plan(ctx, encoder_id, rebuild=rebuild)
    emb = ctx.embedder if plan.fingerprint == ctx.embedder.fingerprint else loader.get(plan.fingerprint)
    if emb is None:
        with ctx.session_factory() as s:
            path = enc_repo.get(s, plan.row_id).path  # type: ignore[union-attr]
        emb = loader(path)
        if emb.fingerprint != plan.fingerprint:
            raise EncoderBusy(f"the checkpoint at {path} no longer has fingerprint {plan.fingerprint}")
    _check_compatible(ctx.embedder, emb)
    view = ctx.index.view(plan.fingerprint, emb.embedding_dim, emb.query_dim, plan.generation)
    target = Context(session_factory=ctx.session_factory, index=view, embedder=emb, max_items=ctx.max_items)
    source = ctx  # the serving context: question encodings can be copied from it
    how = "rebuilding" if plan.full_build else "catching up"
    handle.log(
        f"{how} {plan.fingerprint} generation {plan.generation} "
        f"(serving: {serving.fingerprint} generation {serving.generation})"
    )
    mark = utcnow() - CLOCK_MARGIN
    if plan.full_build:
        with ctx.session_factory() as s, s.begin():
            _set_status(s, plan.row_id, "building", only_if_not_serving=True)
        n_questions = _build_questions(source, target, handle)
        n_models = _build_models(target, handle)
        caught = _catch_up(target, mark, handle)
    else:
        assert plan.since is not None
        n_questions = view.count_questions()
        # Strictly after the flip that replaced it (the flip relabelled every model at exactly that time):
        # what the replacing encoder wrote. Replicas' clocks must agree (NTP) for this, as for any mark.
        caught = _catch_up(target, plan.since, handle, strictly_after=True)
        n_models = view.count_models()
    # The flip: one SQL transaction, then the aliases, then this process.
    switch_mark = utcnow() - CLOCK_MARGIN
    with ctx.session_factory() as s, s.begin():
        old = enc_repo.serving(s, lock=True)
        row = enc_repo.get(s, plan.row_id, lock=True)
        assert row is not None
        old_key = (old.fingerprint, old.generation) if old is not None else None
        if old is not None and old.id != row.id:
            for prev in enc_repo.by_status(s, "previous"):
                prev.status = "retired"
            old.status = "previous"
        flipped_at = utcnow()
        row.status, row.generation, row.promoted_at = "serving", plan.generation, flipped_at
        in_view = sorted(view.model_ids())
        enc_repo.relabel_embeddings(s, plan.fingerprint, in_view, at=flipped_at)
        vectors = view.get_model_vectors(in_view)
        counts = enc_repo.evaluation_counts(s, in_view)
        record_embeddings(
            s,
            plan.fingerprint,
            [(m, vectors[m], counts.get(m, 0)) for m in in_view if m in vectors],
            "reindex" if rebuild else "promote",
        )
    with index_write():
        view.set_serving_alias()
    if on_switch is not None:
        on_switch()
    handle.log(f"switched to {plan.fingerprint} generation {plan.generation}; waiting {grace_s:.0f} s")
    time.sleep(grace_s + SERVING_TTL_S)
    reason: EmbeddingReason = "reindex" if rebuild else "promote"
    caught += _after_switch(target, switch_mark, handle, reason)
    if old_key is not None and old_key[0] == plan.fingerprint and old_key[1] != plan.generation:
        view.drop_collections(*old_key)  # a reindex: the replaced generation is not a rollback target
    _drop_retired(target)
    return SwitchReport(
        fingerprint=plan.fingerprint,
        generation=plan.generation,
        previous_fingerprint=old_key[0] if old_key else None,
        previous_generation=old_key[1] if old_key else None,
        models=n_models,
        questions=n_questions,
        caught_up=caught,
        full_build=plan.full_build,
        seconds=round(time.perf_counter() - started, 2),
    )


def _set_status(s: Session, encoder_id: uuid.UUID, status: str, *, only_if_not_serving: bool) -> None:
    row = enc_repo.get(s, encoder_id, lock=True)
    if row is not None and not (only_if_not_serving and row.status == "serving"):
        row.status = status


def _build_questions(source: Context, target: Context, handle: JobHandle) -> int:
    """Every question's encoding in the target's collection: copied from the serving collection when
    both use the same query encoder (they must), encoded from SQL text otherwise."""
    with source.session_factory() as s:
        total = repo.count_questions(s)
        done = 0
        for rows in repo.iter_questions(s, QUESTION_BATCH):
            ids = [r.id for r in rows]
            have = source.index.get_question_vectors(ids)
            missing = [r for r in rows if r.id not in have]
            if missing:
                vecs = target.embedder.encode_queries([r.text for r in missing])
                have.update(zip([r.id for r in missing], vecs, strict=True))
            with index_write():
                target.index.upsert_questions(ids, np.stack([have[i] for i in ids]))
            done += len(rows)
            handle.progress("questions", done, total)
    return total


def _build_models(target: Context, handle: JobHandle) -> int:
    with target.session_factory() as s:
        ids = repo.iter_model_ids(s)
    return _embed(target, ids, handle, "models")


def _embed(
    target: Context,
    ids: Sequence[uuid.UUID],
    handle: JobHandle,
    stage: str,
    *,
    record: EmbeddingReason | None = None,
) -> int:
    """Embed these models with the target encoder into its collections; a model gone from SQL or left
    without evaluations loses its point. Before the switch SQL is only read (the session is rolled
    back: the embedding state is not the target's to write yet); after it, `record` commits the
    embedding state and a history row with that reason, in the house order (SQL, vectors, commit)."""
    embedded = 0
    for start in range(0, len(ids), MODEL_BATCH):
        part = list(ids[start : start + MODEL_BATCH])
        with target.session_factory() as s:
            rows = repo.get_models(s, part)
            points, new_phi = embed_rows(target, s, list(rows.values()), reason=record)
            if record is None:
                s.rollback()
            with index_write():
                if new_phi:
                    qids = list(new_phi)
                    target.index.upsert_questions(qids, np.stack([new_phi[q] for q in qids]))
                if points:
                    target.index.upsert_models(points)
                gone = sorted(set(part) - {p.id for p in points})
                if gone:
                    target.index.delete_models(gone)
            if record is not None:
                s.commit()
        embedded += len(points)
        handle.progress(stage, min(start + MODEL_BATCH, len(ids)), len(ids))
    return embedded


def _catch_up(target: Context, since: dt.datetime, handle: JobHandle, *, strictly_after: bool = False) -> int:
    """Re-embed models changed since `since` until a pass finds none it has not embedded at that change
    already; drop points of deleted models."""
    total = 0
    seen: dict[uuid.UUID, tuple[str, str]] = {}
    for _ in range(5):
        with target.session_factory() as s:
            changed = enc_repo.changed_since(s, since, strictly_after=strictly_after)
            in_sql = set(repo.iter_model_ids(s))
        since, strictly_after = utcnow() - CLOCK_MARGIN, False
        todo = sorted(m for m, stamp in changed.items() if seen.get(m) != stamp)
        seen.update(changed)
        orphans = sorted(target.index.model_ids() - in_sql)
        if orphans:
            with index_write():
                target.index.delete_models(orphans)
        if not todo and not orphans:
            break
        total += _embed(target, todo, handle, "catch-up")
    return total


def _after_switch(target: Context, since: dt.datetime, handle: JobHandle, reason: EmbeddingReason) -> int:
    """The last catch-up, once requests still holding the old encoder have finished: models they wrote
    (embedding state not the target's), models whose metadata changed since the switch (payloads), and
    points of models deleted meanwhile. Embedding-state times are not read here: the switch itself
    relabelled every model."""
    with target.session_factory() as s:
        changed = set(enc_repo.changed_since(s, since, embeddings=False))  # the ids
        in_sql = set(repo.iter_model_ids(s))
    todo = sorted(changed | set(_stale(target)))
    done = _embed(target, todo, handle, "catch-up", record=reason) if todo else 0
    orphans = sorted(target.index.model_ids() - in_sql)
    if orphans:
        with index_write():
            target.index.delete_models(orphans)
    return done


def _stale(target: Context) -> list[uuid.UUID]:
    """After the switch: models whose recorded vector was written by another encoder (requests that
    still held the old one), and models with evaluations missing from the target's collection."""
    with target.session_factory() as s:
        stale = set(enc_repo.not_embedded_by(s, target.embedder.fingerprint))
        with_evals = enc_repo.with_evaluations(s)
    return sorted(stale | (with_evals - target.index.model_ids()))


def _drop_retired(ctx: Context) -> None:
    with ctx.session_factory() as s:
        retired = [(r.fingerprint, r.generation) for r in enc_repo.by_status(s, "retired")]
    for fp, gen in retired:
        try:
            ctx.index.drop_collections(fp, gen)
        except RuntimeError:
            continue  # bound here (should not happen for a retired encoder): keep it


def check_consistency(ctx: Context) -> dict[str, int]:
    """Counts behind the kill test and readiness: models in SQL with evaluations, points in the serving
    collection, points without a model, models with evaluations but no point."""
    with ctx.session_factory() as s:
        ids = set(repo.iter_model_ids(s))
        embedded = enc_repo.with_evaluations(s)
    points = ctx.index.model_ids()
    return {
        "models": len(ids),
        "models_with_evaluations": len(embedded),
        "points": len(points),
        "orphan_points": len(points - ids),
        "missing_points": len(embedded - points),
    }


def bound_to(ctx: Context, fingerprint: str, generation: int, embedder: Embedder) -> Context:
    """A context on this encoder and build (the serving snapshot a request uses)."""
    index: VectorIndex = ctx.index.view(fingerprint, embedder.embedding_dim, embedder.query_dim, generation)
    return replace(ctx, index=index, embedder=embedder)
