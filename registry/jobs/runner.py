"""Running jobs: worker threads that claim jobs from the table, a handle per job, heartbeats.

A worker thread claims one job at a time (`JobStore.claim`), runs its kind's handler with a
`RunningJob` handle and closes the job (succeeded / failed / cancelled). While the handler runs, a
reporter thread persists its progress and refreshes the lease at least every `lease_s / 4`; a worker
that dies (kill -9, a crashed host) stops refreshing, and after `lease_s` another runner re-claims
the job (attempt + 1). After `max_attempts` workers died on it, it fails with that error. A runner
that is stopped (API shutdown) puts its job back in the queue: the handler is interrupted at its
next report.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from registry.errors import JobCancelled, RegistryError
from registry.jobs.kinds import get_kind
from registry.jobs.store import LOG_LINES, Claim, JobStore, Lost
from registry.services.context import Context

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
FLUSH_EVERY_S = 0.5  # progress and log writes are throttled to about 2 per second per job
Listener = Callable[[str, int, int | None], None]

_runners: weakref.WeakSet[JobRunner] = weakref.WeakSet()
# Jobs this process is running: never re-claimed by itself, and read live by `live(id)` (on SQLite a
# handler's long write transaction holds back every other write, its own progress included).
_live: dict[uuid.UUID, RunningJob] = {}
_live_lock = threading.Lock()


def live(job_id: uuid.UUID) -> RunningJob | None:
    """The handle of a job this process is running (its progress as of now), else None."""
    with _live_lock:
        return _live.get(job_id)


def notify() -> None:
    """Wake this process's idle runners (a job was just submitted)."""
    for runner in list(_runners):
        runner.wake.set()


class WorkerStopping(Exception):
    """Raised in a handler at its next report when its runner is shutting down (the job is requeued)."""


def worker_name(thread: str | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{thread or threading.current_thread().name}"


def error_message(exc: BaseException) -> str:
    """What a failed job's `error` says: the domain error's detail, or the exception type and message."""
    if isinstance(exc, RegistryError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class RunningJob:
    """The `registry.ports.JobHandle` a handler gets.

    Reports only change memory and check the flags (cancel requested, claim lost, worker stopping);
    a reporter thread beside the handler persists them (about twice a second, and at once on a stage
    change) and refreshes the lease. The handler never waits for the jobs table: on SQLite, whose
    one writer may be the handler's own long transaction (an import), a progress write from the
    handler's thread would wait for itself.
    """

    def __init__(
        self, store: JobStore, claim: Claim, stopping: threading.Event, listener: Listener | None = None
    ) -> None:
        self._store = store
        self._claim = claim
        self._stopping = stopping
        self._listener = listener
        self._lock = threading.Lock()
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.stage: str | None = None
        self.done = 0
        self.total: int | None = None
        self._stage_t0 = time.monotonic()
        self._stage_done0 = 0
        self._version = 0  # bumped by every report; the reporter writes when it moved
        self.urgent = threading.Event()  # a stage change: persist now
        self.cancel_requested = False
        self.lost: Lost | None = None

    @property
    def id(self) -> uuid.UUID:
        return self._claim.id

    @property
    def params(self) -> dict[str, Any]:
        return self._claim.params

    @property
    def attempt(self) -> int:
        return self._claim.attempt

    def progress(self, stage: str, done: int, total: int | None) -> None:
        """Report progress of the current stage; raises JobCancelled once a cancel was requested."""
        self._check()
        with self._lock:
            changed = stage != self.stage
            if changed:
                self.stage, self._stage_t0, self._stage_done0 = stage, time.monotonic(), done
            self.done, self.total = int(done), None if total is None else int(total)
            self._version += 1
        if changed:
            self.urgent.set()
        if self._listener is not None:
            self._listener(stage, self.done, self.total)

    def log(self, message: str) -> None:
        """Append a line to the job's log (the last 200 are kept); raises JobCancelled when cancelled."""
        self._check()
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        with self._lock:
            self.lines.extend(f"{stamp} {line}" for line in str(message).splitlines() or [""])
            self._version += 1
        log.info("job %s: %s", self._claim.id, message)

    def rate(self) -> float | None:
        """Items per second in the current stage (None until it has moved)."""
        elapsed = time.monotonic() - self._stage_t0
        moved = self.done - self._stage_done0
        return moved / elapsed if moved > 0 and elapsed > 0 else None

    def log_lines(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def _check(self) -> None:
        if self.lost is not None:
            raise self.lost
        if self._stopping.is_set():
            raise WorkerStopping(f"the worker running job {self._claim.id} is shutting down")
        if self.cancel_requested:
            raise JobCancelled(f"job {self._claim.id} was cancelled")

    def persist(self, written: int) -> int:
        """Write progress and refresh the lease (the reporter thread); returns the version written.

        A database that is busy (SQLite's lock held by a long transaction) is tried again next time.
        """
        with self._lock:
            version = self._version
            snapshot = (self.stage, self.done, self.total, list(self.lines))
        try:
            if version == written:
                cancel = self._store.heartbeat(self._claim)
            else:
                cancel = self._store.save_progress(self._claim, *snapshot, rate=self.rate())
        except Lost as exc:
            self.lost = exc
            return written
        except Exception as exc:  # busy or briefly unreachable: the lease has slack for it
            log.warning("job %s: progress not saved (%s); trying again", self._claim.id, exc)
            return written
        self.cancel_requested = self.cancel_requested or cancel
        return version


def _json_safe(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    if not isinstance(result, dict):
        result = {"value": result}
    out: dict[str, Any] = json.loads(json.dumps(result, default=str))
    return out


def execute(
    ctx: Context,
    store: JobStore,
    claim: Claim,
    *,
    lease_s: float,
    stopping: threading.Event | None = None,
    listener: Listener | None = None,
) -> None:
    """Run one claimed job to its end in this thread, with a reporter thread beside it."""
    stopping = stopping or threading.Event()
    job = RunningJob(store, claim, stopping, listener)
    finished = threading.Event()

    def report() -> None:
        written, last = -1, time.monotonic()
        while not finished.is_set():
            job.urgent.wait(FLUSH_EVERY_S)
            job.urgent.clear()
            # Progress when it moved; otherwise a bare heartbeat every quarter lease.
            if job._version != written or time.monotonic() - last >= lease_s / 4:
                written, last = job.persist(written), time.monotonic()

    reporter = threading.Thread(target=report, name=f"job-reporter-{claim.id}", daemon=True)
    with _live_lock:
        _live[claim.id] = job
    reporter.start()
    outcome: tuple[str, dict[str, Any] | None, str | None] | None = None
    try:
        if claim.attempt > 1:
            job.log(f"attempt {claim.attempt}: an earlier worker stopped answering; running the job again")
        kind = get_kind(claim.kind)
        result = kind.handler(ctx, job)
        outcome = ("succeeded", _json_safe(result), None)
    except Lost:
        log.warning("job %s: taken over by another worker; this one stops", claim.id)
    except WorkerStopping:
        pass
    except JobCancelled:
        outcome = ("cancelled", None, "cancelled on request")
    except Exception as exc:
        if stopping.is_set():  # interrupted by the shutdown (e.g. the index closed under it): requeue
            log.info("job %s interrupted by shutdown: %s", claim.id, exc)
        else:
            log.exception("job %s (%s) failed", claim.id, claim.kind)
            outcome = ("failed", None, error_message(exc))
    finally:
        finished.set()
        job.urgent.set()
        reporter.join()
    lines = job.log_lines()
    try:
        if job.lost is not None:
            return
        if outcome is None:
            if stopping.is_set():
                store.release(claim, lines)
            return
        state, output, error = outcome
        if error:
            lines.append(f"{time.strftime('%H:%M:%S', time.gmtime())} {state}: {error}")
        store.finish(
            claim, state, log=lines, result=output, error=error, progress=(job.stage, job.done, job.total)
        )
    except Lost:
        log.warning("job %s: taken over by another worker before it could be closed", claim.id)
    finally:
        with _live_lock:
            _live.pop(claim.id, None)


class JobRunner:
    """`workers` threads that claim and run jobs until `stop()`; one per process is enough."""

    def __init__(
        self,
        ctx: Context,
        *,
        workers: int = 1,
        lease_s: float = 60.0,
        poll_s: float = 2.0,
        max_attempts: int = MAX_ATTEMPTS,
        listener: Listener | None = None,
    ) -> None:
        self.ctx = ctx
        self.listener = listener  # sees every progress report of the jobs this runner runs
        self.store = JobStore(ctx.session_factory)
        self.workers = workers
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        _runners.add(self)
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"job-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.workers:
            log.info("job runner: %d worker thread(s), lease %.0f s", self.workers, self.lease_s)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; running handlers stop at their next report and their jobs are requeued."""
        self.stopping.set()
        self.wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning(
                    "%s still busy after %.0f s; its job will be re-claimed after the lease", t.name, timeout
                )
        _runners.discard(self)

    def run_once(self) -> bool:
        """Claim and run one job in this thread; False when there was none."""
        with _live_lock:
            busy = list(_live)
        claim, closed = self.store.claim(worker_name(), self.lease_s, self.max_attempts, exclude=busy)
        for c in closed:
            log.warning("job %s closed as %s: %s", c.id, c.state, c.error)
        if claim is None:
            return False
        log.info("job %s (%s) claimed, attempt %d", claim.id, claim.kind, claim.attempt)
        execute(
            self.ctx, self.store, claim, lease_s=self.lease_s, stopping=self.stopping, listener=self.listener
        )
        return True

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:  # the database is unreachable for a moment: try again later
                log.exception("job runner: claiming failed")
            self.wake.wait(self.poll_s)
            self.wake.clear()
