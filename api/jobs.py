"""Wiring of background jobs: the job kinds this process runs and its runner (started by the lifespan).

Kinds that need the composition root (the `import` kind reads table layouts with `encoder.data`) are
registered here. Another kind: call `registry.jobs.register_kind(...)` in `install` below (or from a
module imported here), so the API, the CLI and the kill-test worker all know it.
"""

from __future__ import annotations

from pathlib import Path

from api import lifecycle, training
from api.importing import load_batch
from registry.importers import ImportBatch, ImportOptions
from registry.jobs import JobRunner, register_kind
from registry.jobs.importing import ImportPlaces, check_params, import_handler
from registry.schemas import ImportJobParams
from registry.services import Context
from registry.settings import Settings


def _load(path: Path, fmt: str | None, options: ImportOptions, allow_pickle: bool) -> ImportBatch:
    return load_batch(path, fmt, options, allow_pickle=allow_pickle)


def import_places(settings: Settings, *, local: bool = False) -> ImportPlaces:
    return ImportPlaces(import_root=settings.import_root, job_dir=Path(settings.job_dir), allow_local=local)


def install(settings: Settings, *, local: bool = False) -> None:
    """Register this process's job kinds (`local`: the CLI, whose imports read local paths)."""
    places = import_places(settings, local=local)
    register_kind(
        "import",
        import_handler(_load, places),
        params=ImportJobParams,
        scope="admin",
        description="Import an evaluation log or score table (server path under LOCUS_IMPORT_ROOT, or an "
        "upload staged by POST /v1/jobs/imports/upload); re-runs start over (imports are idempotent).",
        check=check_params(places),
    )
    lifecycle.install()  # reindex, promote, rollback
    training.install(settings)  # train


def start_runner(ctx: Context, settings: Settings) -> JobRunner | None:
    """Start `settings.job_workers` worker threads (None when 0: the process only serves requests)."""
    if settings.job_workers <= 0:
        return None
    runner = JobRunner(ctx, workers=settings.job_workers, lease_s=settings.job_lease_s)
    runner.start()
    return runner
