"""The `import` job: an evaluation log or score table imported in the background.

What happens when the worker dies (kill -9) or the job is cancelled or fails: the import **starts
over**, and that is safe because an import is idempotent per file (questions are matched by key,
provenance by fingerprint, models by name; re-running stores nothing twice and leaves the same
scores). The steps:

1. the batch's new questions are committed (SQL first), then their vectors are upserted; a run that
   dies in between leaves questions without vectors, which the next run (or any embedding that reads
   them) encodes and writes: nothing is left behind that a re-run does not complete;
2. models, scores and embeddings are written by `registry.services.import_batch`, in chunks of
   about 5k scores (at least one model), one transaction each, so other writers never wait long
   for SQLite's lock. A dead worker's open transaction is rolled back by the database, but vectors
   it had already upserted stay in the index (new models' points under ids that never reached SQL; existing
   models' points overwritten ahead of SQL); chunks committed before stay (a re-run rewrites them
   with the same scores and vectors);
3. so after a re-run commits, points carrying one of the batch's model names but no SQL row are
   deleted, and after a cancel or failure the chunk's existing models are re-embedded from SQL:
   every model in SQL has exactly one vector, made from its committed evaluations.

A cancelled or failed import therefore keeps the models of the chunks it finished; submitting it
again completes it.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from registry import importers
from registry import repositories as repo
from registry.errors import Forbidden, InvalidInput
from registry.importers import ImportBatch, ImportOptions
from registry.jobs.runner import WorkerStopping
from registry.jobs.store import Lost
from registry.ports import JobHandle
from registry.schemas import ImportJobParams, ImportReport
from registry.services.common import embed_rows, index_write, upsert_vectors
from registry.services.context import Context
from registry.services.maintenance import MODEL_BATCH, import_batch, resolve_questions

log = logging.getLogger(__name__)

VECTOR_BATCH = 256  # questions encoded per step: a progress report (and a cancel check) each
CHUNK_EVALUATIONS = 5_000  # scores per transaction (at least one model): SQLite writers wait ~1-3 s

# (path, format or None, options, allow_pickle) -> batch: `api.importing.load_batch`, which reads the
# table layouts with encoder.data (the registry may not import it).
Loader = Callable[[Path, str | None, ImportOptions, bool], ImportBatch]


@runtime_checkable
class _Payloads(Protocol):
    def get_model_payloads(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]: ...


@dataclass(frozen=True)
class ImportPlaces:
    """Where import jobs may read: server paths under `import_root`, uploads staged under `job_dir`,
    and (`allow_local`, the CLI only) any local path."""

    import_root: Path | None
    job_dir: Path
    allow_local: bool = False

    @property
    def uploads(self) -> Path:
        return self.job_dir / "uploads"


def resolve_path(p: ImportJobParams, places: ImportPlaces) -> Path:
    """The file or folder an import job reads; Forbidden / InvalidInput naming what is wrong."""
    if (p.path is None) == (p.upload is None):
        raise InvalidInput("import job: give exactly one of params.path (a server path) and params.upload")
    if p.upload is not None:
        target = places.uploads / p.upload
        if not target.is_dir():
            raise InvalidInput(
                f"import job: no staged upload {p.upload!r} (upload with POST /v1/jobs/imports/upload)"
            )
        entries = list(target.iterdir())
        if len(entries) != 1:
            raise InvalidInput(f"import job: staged upload {p.upload!r} is incomplete")
        return entries[0]
    assert p.path is not None
    if "\0" in p.path:
        raise InvalidInput("params.path must not contain NUL characters")
    if p.local:
        if not places.allow_local:
            raise Forbidden("params.local: local paths are imported by `locus-registry import` only")
        target = Path(p.path)
        if not target.exists():
            raise InvalidInput(f"path {p.path!r} does not exist")
        return target
    if places.import_root is None:
        raise Forbidden("imports by server path are off: set LOCUS_IMPORT_ROOT, or upload the file")
    base = places.import_root.resolve()
    target = (base / p.path).resolve()
    if not target.is_relative_to(base):
        raise Forbidden(f"path {p.path!r} is outside the import root")
    if not target.exists():
        raise InvalidInput(f"path {p.path!r} does not exist under the import root")
    return target


def check_params(places: ImportPlaces) -> Callable[[Any], None]:
    """The submit-time check of an import job's parameters (the path must resolve, the format exist)."""

    def check(p: ImportJobParams) -> None:
        if p.format is not None and p.format not in (*importers.FORMATS, *importers.TABLE_FORMATS):
            formats = sorted([*importers.FORMATS, *importers.TABLE_FORMATS])
            raise InvalidInput(f"params.format: unknown format {p.format!r}; one of {formats}")
        resolve_path(p, places)

    return check


def import_handler(load: Loader, places: ImportPlaces) -> Callable[[Context, JobHandle], dict[str, Any]]:
    """The handler of the `import` kind."""

    def run_import(ctx: Context, job: JobHandle) -> dict[str, Any]:
        """Import an evaluation log or score table (a server path or a staged upload)."""
        p = ImportJobParams.model_validate(job.params)
        try:
            path = resolve_path(p, places)
            job.progress("read", 0, None)
            job.log(f"reading {path.name} ({p.format or 'format detected from the files'})")
            options = ImportOptions(
                model_name=p.model_name,
                metric=p.metric,
                filter=p.filter,
                benchmark=p.benchmark,
                key_by=p.key_by,
                name=p.name,
            )
            batch = load(path, p.format, options, p.local)
            job.log(
                f"read {batch.name!r}: {len(batch.questions)} questions, {len(batch.models)} models, "
                f"{batch.n_evaluations} evaluations"
            )
            report = import_table(ctx, batch, job, limit_models=p.limit_models)
        except (WorkerStopping, Lost):
            raise  # the job goes on elsewhere: keep the upload
        except BaseException:
            _drop_upload(p, places)
            raise
        _drop_upload(p, places)
        job.log(
            f"imported: {report['models_created']} models created, {report['models_updated']} updated, "
            f"{report['evaluations']} evaluations"
        )
        return report

    return run_import


def import_table(
    ctx: Context,
    batch: ImportBatch,
    job: JobHandle,
    *,
    limit_models: int | None = None,
    chunk_evaluations: int = CHUNK_EVALUATIONS,
) -> dict[str, Any]:
    """Write a batch so that a re-run after any interruption leaves SQL and vectors consistent.

    Models are written in chunks of about `chunk_evaluations` scores, one transaction each, so the
    import never holds the database's write lock for long (SQLite has one writer: a single
    transaction for 100k scores kept every other write waiting for half a minute).
    """
    names = batch.models if limit_models is None else batch.models[: max(0, limit_models)]
    ctx.ensure_collections()
    staged = stage_questions(ctx, batch, job)
    totals = {"models_created": 0, "models_updated": 0, "evaluations": 0, "sources_created": 0}
    chunks = list(model_chunks(batch, len(names), chunk_evaluations))
    if not chunks:  # no models (limit_models=0): still store the questions' provenance records
        none = np.zeros(0, dtype=np.int64)
        empty = ImportBatch(
            batch.name, batch.questions, [], batch.provenances, none, none, np.zeros(0, np.float32), none
        )
        chunks = [(0, empty)]
    if len(chunks) > 1:
        job.log(f"writing {len(names)} models in {len(chunks)} transactions")
    for offset, chunk in chunks:

        def progress(stage: str, done: int, total: int | None, offset: int = offset) -> None:
            job.progress(stage, offset + done, len(names))  # the chunk's models as a share of all

        try:
            report = import_batch(ctx, chunk, progress=progress)
        except BaseException:
            # This chunk rolled back in SQL; put the vectors back in line with what SQL holds.
            try:
                removed, restored = repair_vectors(ctx, chunk.models, reembed=True)
            except Exception:
                log.exception("import job %s: vectors could not be repaired; run a reindex", job.id)
                raise
            if removed or restored:
                _quiet_log(
                    job,
                    f"rolled back the models from {offset + 1}: {removed} uncommitted vectors removed, "
                    f"{restored} re-embedded; {offset} models were written (a re-run completes the import)",
                )
            raise
        for k in totals:
            totals[k] += getattr(report, k)
    removed, _ = repair_vectors(ctx, names, reembed=False)
    if removed:
        job.log(f"removed {removed} vectors an interrupted earlier attempt had left without a model")
    n_keys = len({q.key for q in batch.questions})
    n_sources = len({p.fingerprint() for p in batch.provenances})
    return ImportReport(
        source=batch.name,
        questions_created=staged,  # the questions this run stored itself (step 1)
        questions_existing=n_keys - staged,
        sources_existing=n_sources - totals["sources_created"],
        **totals,
    ).model_dump(mode="json")


def model_chunks(
    batch: ImportBatch, n_models: int, max_evaluations: int
) -> Iterator[tuple[int, ImportBatch]]:
    """The first `n_models` models of the batch in groups of about `max_evaluations` scores:
    (index of the group's first model, a batch of only those models and the questions they use)."""
    order = np.argsort(batch.model_idx, kind="stable")  # evaluations grouped by model
    bounds = np.searchsorted(batch.model_idx[order], np.arange(len(batch.models) + 1))
    start = 0
    while start < n_models:
        stop = start + 1
        while stop < n_models and bounds[stop + 1] - bounds[start] <= max_evaluations:
            stop += 1
        sel = order[bounds[start] : bounds[stop]]
        used, q_local = np.unique(batch.question_idx[sel], return_inverse=True)
        yield (
            start,
            ImportBatch(
                name=batch.name,
                questions=[batch.questions[j] for j in used.tolist()],
                models=batch.models[start:stop],
                provenances=batch.provenances,
                model_idx=batch.model_idx[sel] - start,
                question_idx=q_local.astype(np.int64),
                scores=batch.scores[sel],
                source_idx=batch.source_idx[sel],
            ),
        )
        start = stop


def stage_questions(ctx: Context, batch: ImportBatch, job: JobHandle) -> int:
    """Commit the batch's new questions, then make sure every one of its questions has a vector.

    Returns the number of questions created. Conflicting texts are refused before anything is written.
    """
    specs = list({q.key: q for q in reversed(batch.questions)}.values())[::-1]  # first of each key
    with ctx.session_factory() as s, s.begin():
        rows, new_rows = resolve_questions(s, specs)
        ids = [r.id for r in rows]
        texts = {r.id: r.text for r in rows}
    if new_rows:
        job.log(f"{len(new_rows)} new questions stored; writing their vectors")
    done = 0
    job.progress("question vectors", 0, len(ids))
    for start in range(0, len(ids), VECTOR_BATCH):
        part = ids[start : start + VECTOR_BATCH]
        have = ctx.index.get_question_vectors(part)
        missing = [q for q in part if q not in have]
        if missing:
            vecs = ctx.embedder.encode_queries([texts[q] for q in missing])  # (B, query_dim)
            with index_write():
                ctx.index.upsert_questions(missing, np.asarray(vecs, dtype=np.float32))
        done += len(part)
        job.progress("question vectors", done, len(ids))
    return len(new_rows)


def repair_vectors(ctx: Context, names: Sequence[str], *, reembed: bool) -> tuple[int, int]:
    """Delete model points named like one of `names` that have no SQL row; with `reembed`, re-embed
    the SQL models of these names from their committed evaluations. Returns (deleted, re-embedded).

    Race-free after a commit: a name is unique in SQL, so a point carrying a committed name under
    another id can only be a dead transaction's leftover (a concurrent registration of that name
    fails at its flush, before it writes a vector).
    """
    wanted = set(names)
    if not wanted:
        return 0, 0
    deleted = 0
    index_ids, _ = ctx.index.scan_models()
    with ctx.session_factory() as s:
        sql_ids = set(repo.iter_model_ids(s))
    orphans = [i for i in index_ids if i not in sql_ids]
    if orphans and isinstance(ctx.index, _Payloads):
        payloads = ctx.index.get_model_payloads(orphans)
        doomed = [i for i, pl in payloads.items() if pl.get("name") in wanted]
        if doomed:
            with index_write():
                ctx.index.delete_models(doomed)
            deleted = len(doomed)
    restored = 0
    if reembed:
        with ctx.session_factory() as s, s.begin():
            rows = list(repo.get_models_by_names(s, sorted(wanted)).values())
            for start in range(0, len(rows), MODEL_BATCH):
                points, new_phi = embed_rows(ctx, s, rows[start : start + MODEL_BATCH])
                upsert_vectors(ctx, points, new_phi)
                restored += len(points)
    return deleted, restored


def _quiet_log(job: JobHandle, message: str) -> None:
    """Log while the job is ending (a cancel or shutdown must not interrupt the clean-up message)."""
    try:
        job.log(message)
    except Exception:
        return


def _drop_upload(p: ImportJobParams, places: ImportPlaces) -> None:
    if p.upload is not None:
        shutil.rmtree(places.uploads / p.upload, ignore_errors=True)
