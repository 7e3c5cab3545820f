"""A job worker process for the kill -9 tests: the API's runner and kinds on a given database and
local Qdrant folder, with the tests' small encoder (same seed, so every process embeds alike).

    python -m tests.jobs.worker --db URL --qdrant PATH [--lease 2] [--import-root DIR]

Runs jobs until none is queued or running any more, then exits 0.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from api import jobs as job_wiring
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.query import QueryEncoder
from registry import jobs
from registry.db import make_engine, make_session_factory
from registry.services import Context
from registry.settings import Settings
from registry.vectors import QdrantIndex
from tests.conftest import SMALL


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--qdrant", required=True)
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument("--import-root", type=Path, default=None)
    ap.add_argument("--job-dir", type=Path, default=Path("data/jobs"))
    ap.add_argument("--progress", type=Path, default=None, help="append every progress report to this file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    embedder = LocusEmbedder(
        LocusModel(SMALL), QueryEncoder(cache_dir=Path.home() / ".cache/locus-registry/query")
    )
    engine = make_engine(args.db)
    index = QdrantIndex(path=args.qdrant)
    ctx = Context(session_factory=make_session_factory(engine), index=index, embedder=embedder)
    ctx.ensure_collections()
    settings = Settings(database_url=args.db, import_root=args.import_root, job_dir=args.job_dir)
    job_wiring.install(settings)
    out = args.progress.open("a", buffering=1) if args.progress else None

    def report(stage: str, done: int, total: int | None) -> None:
        # Seen by the kill test at once (SQL progress can lag: SQLite's writer lock is the import's).
        if out is not None:
            out.write(f"{stage}\t{done}\t{total}\n")

    runner = jobs.JobRunner(ctx, workers=0, lease_s=args.lease, listener=report)
    try:
        while True:
            if runner.run_once():
                continue
            if jobs.list_jobs(ctx, states=["queued", "running"], limit=1).total == 0:
                return 0
            time.sleep(0.2)  # a dead worker's job: wait for its lease to run out
    finally:
        index.close()
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
