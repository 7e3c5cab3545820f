"""Background jobs: a jobs table claimed with row locking, worker threads in the API process.

    register_kind("reindex", handler, params=ReindexParams, scope="admin")   # at startup
    submit_job(ctx, JobCreate(kind="reindex", params={...}), created_by=...)  # -> JobRead (queued)
    JobRunner(ctx, workers=1).start() ... .stop()                              # the API's lifespan

A handler `(ctx, job) -> dict` reports with `job.progress(stage, done, total)` / `job.log(msg)` (both
raise JobCancelled after a cancel) and returns its result. See `registry.jobs.runner` for claiming,
leases and re-runs, and `registry.jobs.importing` for the `import` kind.
"""

from registry.jobs.kinds import JobKind, NoParams, get_kind, known_kinds, register_kind, unregister_kind
from registry.jobs.runner import JobRunner, RunningJob, WorkerStopping, notify
from registry.jobs.service import (
    cancel_job,
    get_job,
    list_jobs,
    list_kinds,
    run_job_now,
    submit_job,
    to_job_read,
)
from registry.jobs.store import Claim, JobStore, Lost

__all__ = [
    "Claim",
    "JobKind",
    "JobRunner",
    "JobStore",
    "Lost",
    "NoParams",
    "RunningJob",
    "WorkerStopping",
    "cancel_job",
    "get_job",
    "get_kind",
    "known_kinds",
    "list_jobs",
    "list_kinds",
    "notify",
    "register_kind",
    "run_job_now",
    "submit_job",
    "to_job_read",
    "unregister_kind",
]
