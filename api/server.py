"""Running the API under uvicorn, in one process or several (`locus-registry serve --workers N`).

With several workers uvicorn imports `api.server:app_factory` in each child process, which builds its
own app from the environment's settings: each worker has its own engine pool, Qdrant client and
encoder. Nothing that decides an answer is kept per process except caches of deterministic values
(question encodings, fingerprint thresholds read from the checkpoint's calibration file or computed
from the shared database), so every worker answers alike.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from api.middleware import configure_logging
from registry.settings import Settings, get_settings


class ServeError(RuntimeError):
    """The requested server shape cannot run with these settings."""


def check_workers(settings: Settings, workers: int) -> None:
    """Several processes need a Qdrant server: the embedded index (Qdrant Edge or qdrant-client's local
    mode) locks its folder to one process."""
    if workers > 1 and not settings.qdrant_url:
        raise ServeError(
            f"--workers {workers} needs a Qdrant server (LOCUS_QDRANT_URL): the embedded vector index "
            f"at {settings.qdrant_path} is one process per folder. Run one worker, or a Qdrant server."
        )


def app_factory() -> FastAPI:
    """The app of one worker process (uvicorn calls it with `factory=True`)."""
    from api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def run(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until interrupted; one JSON access line per request replaces uvicorn's access log."""
    import uvicorn

    check_workers(settings, workers)
    configure_logging(settings.log_level)
    if workers == 1:
        from api.app import create_app

        uvicorn.run(
            create_app(settings), host=host, port=port, log_level=settings.log_level, access_log=False
        )
        return
    # Worker processes read their settings from the environment: pass on what the command line chose.
    os.environ["LOCUS_WORKERS"] = str(workers)
    uvicorn.run(
        "api.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
    )
