"""Job fixtures: test kinds registered for one test, a runner on the test Context, API fixtures."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from registry import jobs
from registry.ports import JobHandle
from registry.schemas import JobRead
from registry.services import Context
from tests.api.conftest import admin, client, reader, writer

__all__ = ["admin", "client", "reader", "writer"]


class CountParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 5
    pause: float = 0.0  # seconds between reports
    fail: str | None = None  # raise ValueError(fail) after the count


class Recorder:
    """What the `count` test kind saw: (job id, attempt, thread) per run."""

    def __init__(self) -> None:
        self.runs: list[tuple[uuid.UUID, int, str]] = []
        self.started = threading.Event()
        self.lock = threading.Lock()

    def handler(self, ctx: Context, job: JobHandle) -> dict[str, Any]:
        p = CountParams.model_validate(job.params)
        with self.lock:
            self.runs.append((job.id, job.attempt, threading.current_thread().name))
        self.started.set()
        job.log(f"counting to {p.n}")
        for i in range(p.n):
            job.progress("count", i + 1, p.n)
            if p.pause:
                time.sleep(p.pause)
        if p.fail is not None:
            raise ValueError(p.fail)
        return {"counted": p.n, "attempt": job.attempt}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    jobs.register_kind("count", rec.handler, params=CountParams, scope="write", description="count to n")
    yield rec
    jobs.unregister_kind("count")


def wait_for(
    ctx: Context, job_id: uuid.UUID, done: Callable[[JobRead], bool], timeout: float = 30
) -> JobRead:
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get_job(ctx, job_id)
        if done(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} ({job.stage} {job.done}/{job.total})")
        time.sleep(0.05)


def finished(job: JobRead) -> bool:
    return job.state in ("succeeded", "failed", "cancelled")
