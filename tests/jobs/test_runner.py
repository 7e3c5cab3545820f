"""The job runner on SQLite and PostgreSQL: submit, claim, progress, cancel, failure, takeover, shutdown."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from registry import jobs
from registry.errors import Forbidden, InvalidInput, NotFound
from registry.schemas import JobCreate
from registry.services import Context
from tests.jobs.conftest import Recorder, finished, wait_for


def test_submit_run_progress_and_result(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 7}), created_by="test")
    assert job.state == "queued" and job.params == {"n": 7} and job.attempts == 0
    runner = jobs.JobRunner(ctx, workers=0)
    assert runner.run_once()
    assert not runner.run_once()  # nothing left
    done = jobs.get_job(ctx, job.id)
    assert done.state == "succeeded", done.error
    assert done.result == {"counted": 7, "attempt": 1}
    assert (done.stage, done.done, done.total) == ("count", 7, 7)
    assert any("counting to 7" in line for line in done.log)
    assert done.attempts == 1 and done.created_by == "test"
    assert done.started_at is not None and done.finished_at is not None
    assert done.rate is None and done.eta_s is None  # only while running
    listed = jobs.list_jobs(ctx, states=["succeeded"], kinds=["count"])
    assert [j.id for j in listed.items] == [job.id] and listed.total == 1
    assert jobs.list_jobs(ctx, states=["queued"]).total == 0


def test_bad_kind_and_params_refused_at_submit(ctx: Context, recorder: Recorder) -> None:
    with pytest.raises(InvalidInput, match=r"unknown job kind 'nope'.*count"):
        jobs.submit_job(ctx, JobCreate(kind="nope"))
    with pytest.raises(InvalidInput, match=r"params\.n"):
        jobs.submit_job(ctx, JobCreate(kind="count", params={"n": "many"}))
    with pytest.raises(InvalidInput, match=r"params\.extra"):
        jobs.submit_job(ctx, JobCreate(kind="count", params={"extra": 1}))
    with pytest.raises(Forbidden, match="'write' scope"):
        jobs.submit_job(ctx, JobCreate(kind="count"), scopes=["read"])
    with pytest.raises(InvalidInput, match="unknown job state"):
        jobs.list_jobs(ctx, states=["done"])
    assert jobs.list_jobs(ctx).total == 0


def test_cancel_queued_job_never_runs(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count"))
    cancelled = jobs.cancel_job(ctx, job.id)
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    assert not jobs.JobRunner(ctx, workers=0).run_once()
    assert recorder.runs == []
    assert jobs.cancel_job(ctx, job.id).state == "cancelled"  # idempotent
    with pytest.raises(NotFound):
        jobs.cancel_job(ctx, uuid.uuid4())


def test_cancel_running_job_stops_at_next_report(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 1000, "pause": 0.01}))
    runner = jobs.JobRunner(ctx, workers=1, lease_s=5)
    runner.start()
    try:
        running = wait_for(ctx, job.id, lambda j: j.state == "running" and j.done > 0)
        assert running.worker is not None
        asked = jobs.cancel_job(ctx, job.id)
        assert asked.cancel_requested
        end = wait_for(ctx, job.id, finished)
    finally:
        runner.stop()
    assert end.state == "cancelled" and end.error == "cancelled on request"
    assert 0 < end.done < 1000


def test_rate_and_eta_while_running(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 400, "pause": 0.01}))
    runner = jobs.JobRunner(ctx, workers=1, lease_s=5)
    runner.start()
    try:
        seen = wait_for(ctx, job.id, lambda j: j.rate is not None and j.done > 20)
        end = wait_for(ctx, job.id, finished)
    finally:
        runner.stop()
    assert seen.rate is not None and 10 < seen.rate < 200  # about 100 items/s
    assert seen.eta_s is not None and seen.total is not None
    assert seen.eta_s == pytest.approx((seen.total - seen.done) / seen.rate)
    assert end.state == "succeeded"


def test_failures_are_recorded_with_their_message(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 2, "fail": "boom"}))

    def bad_input(ctx: Context, job: object) -> dict[str, object]:
        raise InvalidInput("column 'label' is missing")

    jobs.register_kind("bad", bad_input)
    try:
        other = jobs.submit_job(ctx, JobCreate(kind="bad"))
        runner = jobs.JobRunner(ctx, workers=0)
        while runner.run_once():
            pass
    finally:
        jobs.unregister_kind("bad")
    failed = jobs.get_job(ctx, job.id)
    assert failed.state == "failed" and failed.error == "ValueError: boom" and failed.result is None
    assert failed.log[-1].endswith("failed: ValueError: boom")
    assert jobs.get_job(ctx, other.id).error == "InvalidInput: column 'label' is missing"


def test_dead_worker_job_is_reclaimed_then_given_up(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 3}))
    store = jobs.JobStore(ctx.session_factory)
    ghost, _ = store.claim("ghost-1", lease_s=0.2, max_attempts=3)  # claims and never reports
    assert ghost is not None and ghost.attempt == 1
    assert store.claim("other", lease_s=60, max_attempts=3) == (None, [])  # lease not yet over
    time.sleep(0.3)
    runner = jobs.JobRunner(ctx, workers=0, lease_s=0.2)
    assert runner.run_once()
    done = jobs.get_job(ctx, job.id)
    assert done.state == "succeeded" and done.result == {"counted": 3, "attempt": 2} and done.attempts == 2
    assert any("attempt 2" in line for line in done.log)
    # The ghost wakes up: its writes match no row any more.
    with pytest.raises(jobs.Lost):
        store.save_progress(ghost, "count", 1, 3, [], None)

    doomed = jobs.submit_job(ctx, JobCreate(kind="count"))
    for i in range(3):
        claim, _ = store.claim(f"ghost-{i}", lease_s=0.05, max_attempts=3)
        assert claim is not None and claim.id == doomed.id and claim.attempt == i + 1
        time.sleep(0.1)
    claim, closed = store.claim("survivor", lease_s=0.05, max_attempts=3)
    assert claim is None and [c.id for c in closed] == [doomed.id]
    gone = jobs.get_job(ctx, doomed.id)
    assert gone.state == "failed" and gone.error is not None and gone.error.startswith("WorkerDied")
    assert "ghost-2" in gone.error


def test_stopping_a_runner_requeues_its_job(ctx: Context, recorder: Recorder) -> None:
    job = jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 1000, "pause": 0.01}))
    runner = jobs.JobRunner(ctx, workers=1, lease_s=5)
    runner.start()
    wait_for(ctx, job.id, lambda j: j.done > 0)
    runner.stop()
    back = jobs.get_job(ctx, job.id)
    assert back.state == "queued" and back.attempts == 0 and back.worker is None
    assert jobs.JobRunner(ctx, workers=0).run_once()
    assert jobs.get_job(ctx, job.id).state == "succeeded"


def test_concurrent_runners_run_each_job_once(ctx: Context, recorder: Recorder) -> None:
    """Two runners of two threads each (SKIP LOCKED on PostgreSQL, compare-and-set on SQLite)."""
    ids = [
        jobs.submit_job(ctx, JobCreate(kind="count", params={"n": 3, "pause": 0.01})).id for _ in range(16)
    ]
    runners = [jobs.JobRunner(ctx, workers=2, lease_s=30, poll_s=0.05) for _ in range(2)]
    for r in runners:
        r.start()
    try:
        for i in ids:
            wait_for(ctx, i, finished, timeout=60)
    finally:
        for r in runners:
            r.stop()
    assert Counter(run[0] for run in recorder.runs) == {i: 1 for i in ids}
    assert {jobs.get_job(ctx, i).state for i in ids} == {"succeeded"}
    assert {jobs.get_job(ctx, i).attempts for i in ids} == {1}
    assert len({run[2] for run in recorder.runs}) >= 2  # the work was shared


def test_run_job_now_reports_to_a_listener(ctx: Context, recorder: Recorder) -> None:
    seen: list[tuple[str, int, int | None]] = []
    done = jobs.run_job_now(ctx, JobCreate(kind="count", params={"n": 4}), listener=lambda *a: seen.append(a))
    assert done.state == "succeeded" and done.attempts == 1
    assert seen == [("count", i, 4) for i in range(1, 5)]
    assert jobs.list_jobs(ctx).items[0].id == done.id
