"""Job use cases: submit, read, list, cancel; and running one job inline (the CLI)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

from registry.errors import Forbidden, InvalidInput, NotFound
from registry.jobs import runner
from registry.jobs.kinds import get_kind, known_kinds, validate_params
from registry.jobs.store import Claim, JobStore
from registry.schemas import JobCreate, JobKindRead, JobRead, Page
from registry.services.context import Context, SessionSource
from registry.tables import JOB_STATES, JobRow

DEFAULT_LEASE_S = 60.0


def to_job_read(row: JobRow) -> JobRead:
    """The read model; a job this process is running shows its progress as of now (not as of the
    last write: on SQLite a handler's write transaction holds back its progress writes)."""
    running = row.state == "running"
    extra = row.result or {}
    rate = extra.get("rate") if running else None
    stage, done, total, log = row.stage, row.done, row.total, row.log.splitlines() if row.log else []
    handle = runner.live(row.id) if running else None
    if handle is not None:
        stage, done, total, log, rate = (
            handle.stage,
            handle.done,
            handle.total,
            handle.log_lines(),
            handle.rate(),
        )
    rate = float(rate) if isinstance(rate, int | float) and rate > 0 else None
    eta = None
    if rate and total is not None and total >= done:
        eta = (total - done) / rate
    return JobRead(
        id=row.id,
        kind=row.kind,
        state=row.state,  # type: ignore[arg-type]  # the CHECK constraint guarantees a JobState
        params=dict(row.params or {}),
        stage=stage,
        done=done,
        total=total,
        rate=rate,
        eta_s=eta,
        log=log,
        result=row.result if row.state == "succeeded" else None,
        error=row.error,
        cancel_requested=row.cancel_requested,
        attempts=row.attempts,
        worker=row.worker,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
    )


def submit_job(
    ctx: SessionSource, job: JobCreate, *, created_by: str | None = None, scopes: Sequence[str] | None = None
) -> JobRead:
    """Queue a job after validating its parameters; `scopes` (the caller's key) must grant the kind's.

    `scopes=None` skips the check (the CLI and code in the server process act as admin).
    """
    kind = get_kind(job.kind)
    if scopes is not None and kind.scope not in scopes and "admin" not in scopes:
        raise Forbidden(f"job kind {kind.name!r} needs the {kind.scope!r} scope")
    params = validate_params(kind, job.params).model_dump(mode="json", exclude_unset=True)
    row = JobStore(ctx.session_factory).insert(kind.name, params, created_by)
    runner.notify()
    return to_job_read(row)


def get_job(ctx: SessionSource, job_id: uuid.UUID) -> JobRead:
    row = JobStore(ctx.session_factory).get(job_id)
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return to_job_read(row)


def list_jobs(
    ctx: SessionSource,
    *,
    states: Sequence[str] = (),
    kinds: Sequence[str] = (),
    limit: int = 50,
    offset: int = 0,
) -> Page[JobRead]:
    """Jobs, newest first, optionally only those in these states or of these kinds."""
    bad = [s for s in states if s not in JOB_STATES]
    if bad:
        raise InvalidInput(f"unknown job state(s) {bad}; one of {list(JOB_STATES)}")
    rows, total = JobStore(ctx.session_factory).list_jobs(states, kinds, limit, offset)
    return Page[JobRead](items=[to_job_read(r) for r in rows], total=total, limit=limit, offset=offset)


def cancel_job(ctx: SessionSource, job_id: uuid.UUID, *, lease_s: float = DEFAULT_LEASE_S) -> JobRead:
    """Cancel: a queued job at once; a running one stops at its next progress report. A finished job
    is returned unchanged (cancelling is idempotent)."""
    row = JobStore(ctx.session_factory).cancel(job_id, lease_s)
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return to_job_read(row)


def list_kinds() -> list[JobKindRead]:
    """The kinds this process runs."""
    return [
        JobKindRead(
            kind=k.name, scope=k.scope, description=k.description, params_schema=k.params.model_json_schema()
        )
        for k in known_kinds()
    ]


def run_job_now(
    ctx: Context,
    job: JobCreate,
    *,
    created_by: str | None = None,
    listener: runner.Listener | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> JobRead:
    """Record a job and run it in this thread (the CLI): same handler, same table, a progress callback.

    If this process dies, a server's runner re-claims the job after the lease like any other.
    """
    kind = get_kind(job.kind)
    params = validate_params(kind, job.params).model_dump(mode="json", exclude_unset=True)
    store = JobStore(ctx.session_factory)
    row = store.insert(kind.name, params, created_by, claim_as=runner.worker_name())
    claim = Claim(row.id, kind.name, dict(params), 1, row.worker or "")
    runner.execute(ctx, store, claim, lease_s=lease_s, stopping=threading.Event(), listener=listener)
    return get_job(ctx, row.id)
