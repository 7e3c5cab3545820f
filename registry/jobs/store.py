"""The jobs table's SQL: insert, claim (row locking), fenced progress writes, finish, cancel.

Claiming is a compare-and-set on (id, state, attempts): every claim increments `attempts`, so the
pair (id, attempts) is the claim's fencing token and every later write of a worker is conditional on
it. A worker that was presumed dead (its heartbeat older than the lease) and whose job was taken
over finds its writes matching no row and stops (`Lost`). On PostgreSQL the candidate row is read
with `FOR UPDATE SKIP LOCKED`, so concurrent runners (threads, processes, API replicas) each take a
different job instead of queueing on the same row; SQLite has one writer at a time, and the
conditional UPDATE alone decides who won.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry.tables import JobRow, utcnow

LOG_LINES = 200  # lines of log kept on the row


@dataclass(frozen=True)
class Claim:
    """A job taken by one worker: (id, attempt) fences every write the worker makes to it."""

    id: uuid.UUID
    kind: str
    params: dict[str, Any]
    attempt: int
    worker: str


@dataclass(frozen=True)
class Abandoned:
    """A running job whose worker died too often (or whose cancel was requested): closed by a claim."""

    id: uuid.UUID
    state: str
    error: str


class Lost(Exception):
    """This worker's claim is void: the job was taken over (heartbeat too old) or finished elsewhere."""


def _fence(claim: Claim) -> Any:
    return and_(JobRow.id == claim.id, JobRow.attempts == claim.attempt, JobRow.state == "running")


class JobStore:
    """SQL of the jobs table; each method is one short transaction of its own."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    # ------------------------------------------------------------ requests

    def insert(
        self, kind: str, params: dict[str, Any], created_by: str | None, *, claim_as: str | None = None
    ) -> JobRow:
        """A new queued job; with `claim_as`, already running under that worker (inline runs)."""
        now = utcnow()
        row = JobRow(
            id=uuid.uuid4(),
            kind=kind,
            state="queued",
            params=params,
            done=0,
            log="",
            cancel_requested=False,
            attempts=0,
            created_by=None if created_by is None else created_by[:200],
            created_at=now,
        )
        if claim_as is not None:
            row.state, row.attempts, row.worker = "running", 1, claim_as[:200]
            row.started_at = row.heartbeat_at = now
        with self.session_factory() as s, s.begin():
            s.add(row)
        return row

    def get(self, job_id: uuid.UUID) -> JobRow | None:
        with self.session_factory() as s:
            return s.get(JobRow, job_id)

    def list_jobs(
        self, states: Sequence[str], kinds: Sequence[str], limit: int, offset: int
    ) -> tuple[list[JobRow], int]:
        """Newest first."""
        conds = []
        if states:
            conds.append(JobRow.state.in_(states))
        if kinds:
            conds.append(JobRow.kind.in_(kinds))
        with self.session_factory() as s:
            total = s.scalar(select(func.count()).select_from(JobRow).where(*conds)) or 0
            rows = s.scalars(
                select(JobRow)
                .where(*conds)
                .order_by(JobRow.created_at.desc(), JobRow.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return list(rows), int(total)

    def cancel(self, job_id: uuid.UUID, lease_s: float) -> JobRow | None:
        """Queued -> cancelled at once; running -> cancel requested (or cancelled, when its worker is
        dead); a finished job is left as it is. None when the job does not exist."""
        now = utcnow()
        with self.session_factory() as s, s.begin():
            row = s.get(JobRow, job_id, with_for_update=_is_pg(s))
            if row is None:
                return None
            if row.state == "queued":
                row.state, row.finished_at, row.error = "cancelled", now, "cancelled before it started"
            elif row.state == "running":
                row.cancel_requested = True
                if row.heartbeat_at is None or row.heartbeat_at < now - dt.timedelta(seconds=lease_s):
                    row.state, row.finished_at = "cancelled", now
                    row.error = "cancelled (its worker had stopped answering)"
            return row

    # ------------------------------------------------------------ workers

    def claim(
        self, worker: str, lease_s: float, max_attempts: int, *, exclude: Sequence[uuid.UUID] = ()
    ) -> tuple[Claim | None, list[Abandoned]]:
        """Take the oldest queued job, or a running one whose heartbeat is older than the lease.

        `exclude`: jobs this process is running (never taken over from itself, even when a long
        SQLite transaction held up their heartbeats). A stale job that already had `max_attempts`
        workers, or whose cancel was requested, is closed instead (failed / cancelled) and reported
        in the second value.
        """
        closed: list[Abandoned] = []
        for _ in range(8):  # a lost compare-and-set (another worker won) tries the next candidate
            now = utcnow()
            stale = now - dt.timedelta(seconds=lease_s)
            with self.session_factory() as s, s.begin():
                stmt = (
                    select(JobRow.id, JobRow.kind, JobRow.state, JobRow.attempts, JobRow.params)
                    .add_columns(JobRow.cancel_requested, JobRow.worker, JobRow.heartbeat_at)
                    .where(
                        JobRow.id.not_in(list(exclude)),
                        or_(
                            JobRow.state == "queued",
                            and_(
                                JobRow.state == "running",
                                or_(JobRow.heartbeat_at.is_(None), JobRow.heartbeat_at < stale),
                            ),
                        ),
                    )
                    .order_by(JobRow.created_at, JobRow.id)
                    .limit(1)
                )
                if _is_pg(s):
                    stmt = stmt.with_for_update(skip_locked=True)
                cand = s.execute(stmt).first()
                if cand is None:
                    return None, closed
                beat = (
                    JobRow.heartbeat_at.is_(None)
                    if cand.heartbeat_at is None
                    else JobRow.heartbeat_at == cand.heartbeat_at
                )
                cas = and_(
                    JobRow.id == cand.id, JobRow.state == cand.state, JobRow.attempts == cand.attempts, beat
                )
                if cand.state == "running" and (cand.cancel_requested or cand.attempts >= max_attempts):
                    if cand.cancel_requested:
                        state, error = "cancelled", "cancelled (its worker had stopped answering)"
                    else:
                        state = "failed"
                        error = (
                            f"WorkerDied: the worker running this job ({cand.worker}) stopped answering "
                            f"{cand.attempts} times (the limit is {max_attempts}); see the log"
                        )
                    res = s.execute(
                        update(JobRow).where(cas).values(state=state, error=error, finished_at=now)
                    )
                    if res.rowcount == 1:  # type: ignore[attr-defined]
                        closed.append(Abandoned(cand.id, state, error))
                    continue
                res = s.execute(
                    update(JobRow)
                    .where(cas)
                    .values(
                        state="running",
                        worker=worker[:200],
                        attempts=cand.attempts + 1,
                        heartbeat_at=now,
                        started_at=func.coalesce(JobRow.started_at, now),
                    )
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    return Claim(
                        cand.id, cand.kind, dict(cand.params or {}), cand.attempts + 1, worker
                    ), closed
        return None, closed

    def heartbeat(self, claim: Claim) -> bool:
        """Refresh the lease; returns whether a cancel was requested. Raises Lost."""
        with self.session_factory() as s, s.begin():
            got = s.execute(
                update(JobRow)
                .where(_fence(claim))
                .values(heartbeat_at=utcnow())
                .returning(JobRow.cancel_requested)
            ).first()
        if got is None:
            raise Lost(f"job {claim.id} attempt {claim.attempt} was taken over")
        return bool(got[0])

    def save_progress(
        self,
        claim: Claim,
        stage: str | None,
        done: int,
        total: int | None,
        log: Sequence[str],
        rate: float | None,
    ) -> bool:
        """Persist progress (refreshing the lease); returns whether a cancel was requested. Raises Lost."""
        with self.session_factory() as s, s.begin():
            got = s.execute(
                update(JobRow)
                .where(_fence(claim))
                .values(
                    stage=None if stage is None else stage[:64],
                    done=done,
                    total=total,
                    log="\n".join(list(log)[-LOG_LINES:]),
                    result={"rate": rate},  # while running: the progress rate (replaced by the result)
                    heartbeat_at=utcnow(),
                )
                .returning(JobRow.cancel_requested)
            ).first()
        if got is None:
            raise Lost(f"job {claim.id} attempt {claim.attempt} was taken over")
        return bool(got[0])

    def finish(
        self,
        claim: Claim,
        state: str,
        *,
        log: Sequence[str],
        result: dict[str, Any] | None = None,
        error: str | None = None,
        progress: tuple[str | None, int, int | None] | None = None,
    ) -> None:
        """Close the job (succeeded, failed or cancelled) with its last progress. Raises Lost."""
        now = utcnow()
        values: dict[str, Any] = {
            "state": state,
            "result": result,
            "error": error,
            "log": "\n".join(list(log)[-LOG_LINES:]),
            "finished_at": now,
            "heartbeat_at": now,
        }
        if progress is not None:
            stage, done, total = progress
            values.update(stage=None if stage is None else stage[:64], done=done, total=total)

        def write() -> int:
            with self.session_factory() as s, s.begin():
                return int(s.execute(update(JobRow).where(_fence(claim)).values(**values)).rowcount)  # type: ignore[attr-defined]

        if _patiently(write) != 1:
            raise Lost(f"job {claim.id} attempt {claim.attempt} was taken over")

    def release(self, claim: Claim, log: Sequence[str]) -> None:
        """Put a job back in the queue (its worker is shutting down); the attempt is not counted."""

        def write() -> int:
            with self.session_factory() as s, s.begin():
                s.execute(
                    update(JobRow)
                    .where(_fence(claim))
                    .values(
                        state="queued",
                        attempts=claim.attempt - 1,
                        worker=None,
                        heartbeat_at=None,
                        log="\n".join(list(log)[-LOG_LINES:]),
                    )
                )
            return 1

        _patiently(write)


def _patiently(write: Callable[[], int], tries: int = 10) -> int:
    """A closing write, tried again while the database is busy (SQLite: another long transaction)."""
    for i in range(tries):
        try:
            return write()
        except OperationalError:
            if i == tries - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _is_pg(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"
