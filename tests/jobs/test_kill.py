"""kill -9 during a job: a second worker process re-runs it, and SQL and the vectors end consistent.

Each job kind gets a `KillCase` (how to prepare its input, when to kill, what to check afterwards);
add a case to CASES for a new kind. The worker is a real process (`tests/jobs/worker.py`) on a
file-backed database (SQLite file or a PostgreSQL schema) and a local Qdrant folder, so the kill
loses everything in flight: an open transaction, vectors already upserted, the lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from api import jobs as job_wiring
from encoder.inference import LocusEmbedder
from registry import jobs
from registry import repositories as repo
from registry.db import make_session_factory
from registry.schemas import JobCreate, JobRead
from registry.services import Context, Sessions
from registry.settings import Settings
from registry.tables import EvaluationRow, ModelRow, QuestionRow
from registry.vectors import QdrantIndex
from tests.jobs.data import write_normalised

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KillCase:
    kind: str
    prepare: Callable[[Path], dict[str, Any]]  # writes the job's input under the folder; returns params
    kill_when: Callable[[str, int, int | None], bool]  # kill the first worker at this progress report
    check: Callable[[Context], None]  # after the re-run: SQL and vectors consistent


IMPORT_MODELS, IMPORT_QUESTIONS = 128, 40


def _prepare_import(root: Path) -> dict[str, Any]:
    write_normalised(root / "src", models=IMPORT_MODELS, questions=IMPORT_QUESTIONS, seed=7)
    return {"path": "src", "format": "normalised", "name": "kill"}


def _check_import(ctx: Context) -> None:
    with ctx.session_factory() as s:
        sql_ids = set(repo.iter_model_ids(s))
        names = s.scalars(select(ModelRow.name)).all()
        n_evals = s.scalar(select(func.count()).select_from(EvaluationRow))
        distinct = s.execute(select(EvaluationRow.model_id, EvaluationRow.question_id).distinct()).all()
        q_ids = list(s.scalars(select(QuestionRow.id)))
        n_embedded = {
            r.embedding.n_evaluations for r in s.scalars(select(ModelRow)) if r.embedding is not None
        }
    assert len(sql_ids) == len(names) == len(set(names)) == IMPORT_MODELS  # no duplicate models
    assert n_evals == len(distinct) == IMPORT_MODELS * IMPORT_QUESTIONS  # no duplicate scores
    assert n_embedded == {IMPORT_QUESTIONS}
    index_ids, _ = ctx.index.scan_models()
    assert len(index_ids) == len(set(index_ids)) == ctx.index.count_models() == IMPORT_MODELS
    assert set(index_ids) == sql_ids  # exactly one vector per model, none left over
    assert len(q_ids) == IMPORT_QUESTIONS and len(ctx.index.get_question_vectors(q_ids)) == IMPORT_QUESTIONS
    assert isinstance(ctx.index, QdrantIndex) and ctx.index.count_questions() == IMPORT_QUESTIONS


CASES = [
    KillCase(
        kind="import",
        prepare=_prepare_import,
        # mid-embedding: some vectors are upserted, the transaction holding the models is open
        kill_when=lambda stage, done, total: stage == "embeddings" and total is not None and 0 < done < total,
        check=_check_import,
    ),
]


def _worker(db_url: str, qdrant: Path, root: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.jobs.worker", "--db", db_url, "--qdrant", str(qdrant)]
    cmd += ["--progress", str(root / "progress.tsv")]
    cmd += ["--lease", "2", "--import-root", str(root), "--job-dir", str(root / "jobs")]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _int(text: str) -> int | None:
    return None if text == "None" else int(text)


def kill_then_rerun(
    sessions: Sessions,
    job_id: uuid.UUID,
    db_url: str,
    root: Path,
    kill_when: Callable[[str, int, int | None], bool],
) -> JobRead:
    """Run the queued job in a worker process on `root`'s Qdrant folder, SIGKILL it at the first progress
    report `kill_when` accepts, then let a second worker finish it; returns the finished job (asserted
    succeeded on its second attempt)."""
    qdrant, log = root / "qdrant", root / "worker.log"
    first = _worker(db_url, qdrant, root, log)
    deadline = time.monotonic() + 240
    try:
        reports = root / "progress.tsv"
        while True:
            lines = reports.read_text().splitlines() if reports.exists() else []
            last = lines[-1].split("\t") if lines else None
            if last is not None and kill_when(last[0], int(last[1]), _int(last[2])):
                break
            seen = jobs.get_job(sessions, job_id)
            assert seen.state in ("queued", "running"), f"{seen.state} before the kill: {seen.error}"
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"never reached the kill point: {seen}"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    killed = jobs.get_job(sessions, job_id)
    assert killed.state == "running" and killed.attempts == 1  # died mid-way: nobody closed it

    second = _worker(db_url, qdrant, root, log)
    try:
        assert second.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        second.kill()
    done = jobs.get_job(sessions, job_id)
    assert done.state == "succeeded", (done.error, log.read_text()[-3000:])
    assert done.attempts == 2
    return done


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.kind)
def test_kill_9_mid_job_then_rerun(
    case: KillCase, db_url: str, engine: Engine, embedder: LocusEmbedder, tmp_path: Path
) -> None:
    sessions = Sessions(make_session_factory(engine))
    job_wiring.install(Settings(database_url=db_url, import_root=tmp_path, job_dir=tmp_path / "jobs"))
    params = case.prepare(tmp_path)
    job = jobs.submit_job(sessions, JobCreate(kind=case.kind, params=params))
    qdrant = tmp_path / "qdrant"
    done = kill_then_rerun(sessions, job.id, db_url, tmp_path, case.kill_when)
    assert any("attempt 2" in line for line in done.log)

    index = QdrantIndex(path=str(qdrant))
    try:
        ctx = Context(session_factory=sessions.session_factory, index=index, embedder=embedder)
        ctx.ensure_collections()
        case.check(ctx)
    finally:
        index.close()
