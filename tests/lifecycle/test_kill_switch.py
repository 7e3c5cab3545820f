"""kill -9 during a reindex or a promotion: a second worker process re-runs the job, and afterwards the
encoder in service has exactly one vector per model with evaluations, none left over, and every model's
embedding state names it (the harness of tests/jobs/test_kill.py, with a populated registry)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import Engine, func, select

from api import jobs as job_wiring
from api.serving import EmbedderCache
from encoder.checkpoint import save_checkpoint
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from registry import jobs
from registry.db import make_session_factory
from registry.schemas import EncoderRead, EvaluationIn, JobCreate, JobRead, ModelCreate, QuestionIn
from registry.services import Context, Sessions, encoders
from registry.services import models as model_svc
from registry.services.questions import add_questions
from registry.settings import Settings
from registry.tables import EmbeddingStateRow, EvaluationRow
from registry.vectors import QdrantIndex
from tests.conftest import SMALL
from tests.jobs.test_kill import kill_then_rerun

MODELS, QUESTIONS = 48, 30
LATE = 40  # models registered under the promoted encoder before a rollback
MODELS_TOTAL_DEFAULT = MODELS


def _register(ctx: Context, prefix: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for m in range(n):
        scores = rng.integers(0, 2, QUESTIONS)
        model_svc.register_model(
            ctx,
            ModelCreate(
                name=f"{prefix}-{m}",
                evaluations=[EvaluationIn(question=f"k{i}", score=float(y)) for i, y in enumerate(scores)],
            ),
        )


def _populate(ctx: Context, root: Path, benchmark: str | None = None) -> None:
    add_questions(
        ctx,
        [
            QuestionIn(key=f"k{i}", text=f"Kill test question {i}: {i} squared?", benchmark=benchmark)
            for i in range(QUESTIONS)
        ],
    )
    _register(ctx, "kill", MODELS, seed=3)
    encoders.ensure_serving(ctx, str(root / "serving"))


def _setup_reindex(ctx: Context, root: Path) -> dict[str, Any]:
    _populate(ctx, root)
    return {}


def _setup_promote(ctx: Context, root: Path) -> dict[str, Any]:
    _populate(ctx, root)
    torch.manual_seed(11)
    path = root / "candidate"
    save_checkpoint(LocusModel(SMALL), path)
    entry = encoders.register_encoder(ctx, str(path), EmbedderCache(ctx.embedder, None))
    return {"encoder_id": str(entry.id)}


def _setup_rollback(ctx: Context, root: Path) -> dict[str, Any]:
    """Promoted to a candidate, then LATE more models registered while it served: the rollback must
    catch them up into the previous encoder's collections (the work the kill interrupts)."""
    params = _setup_promote(ctx, root)
    cache = EmbedderCache(ctx.embedder, None)
    report = encoders.switch_to(ctx, uuid.UUID(params["encoder_id"]), cache, _Quiet(), grace_s=0)
    bound = encoders.bound_to(ctx, report.fingerprint, report.generation, cache(str(root / "candidate")))
    _register(bound, "late", LATE, seed=4)
    return {}


class _Quiet:
    """A JobHandle for a switch made while setting a test up."""

    id = uuid.uuid4()
    attempt = 1

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def progress(self, stage: str, done: int, total: int | None) -> None:
        return None

    def log(self, message: str) -> None:
        return None


def _check_switch(
    changes_encoder: bool, models: int = MODELS_TOTAL_DEFAULT
) -> Callable[[Context, EncoderRead, JobRead], None]:
    def check(ctx: Context, before: EncoderRead, done: JobRead) -> None:
        serving = encoders.serving_encoder(ctx)
        assert (serving.fingerprint != before.fingerprint) == changes_encoder
        assert serving.generation > before.generation or changes_encoder
        emb = EmbedderCache(ctx.embedder, None)
        bound = encoders.bound_to(
            ctx, serving.fingerprint, serving.generation, emb.get(serving.fingerprint) or emb(serving.path)
        )
        counts = encoders.check_consistency(bound)
        assert counts == {
            "models": models,
            "models_with_evaluations": models,
            "points": models,
            "orphan_points": 0,
            "missing_points": 0,
        }
        with ctx.session_factory() as s:
            labels = dict(
                s.execute(
                    select(EmbeddingStateRow.fingerprint, func.count()).group_by(
                        EmbeddingStateRow.fingerprint
                    )
                ).all()
            )
            n_evals = s.scalar(select(func.count()).select_from(EvaluationRow))
        assert labels == {serving.fingerprint: models}  # every vector in service is the serving encoder's
        assert n_evals == models * QUESTIONS  # nothing duplicated or lost

    return check


def _setup_train(ctx: Context, root: Path) -> dict[str, Any]:
    _populate(ctx, root, benchmark="kill")
    return {"steps": 150, "eval_k": 8, "min_questions": 10, "holdout_models": 0.25}


def _check_train(ctx: Context, before: EncoderRead, done: JobRead) -> None:
    assert any("resuming from the state saved by attempt 1" in line for line in done.log)  # not started over
    assert done.result is not None
    listed = encoders.list_encoders(ctx)
    candidates = [e for e in listed if e.status == "candidate"]
    assert len(candidates) == 1 and str(candidates[0].id) == done.result["encoder_id"]  # registered once
    assert candidates[0].report["steps_run"] == 150 and Path(candidates[0].path).is_dir()
    assert encoders.serving_encoder(ctx).fingerprint == before.fingerprint  # training never switches


@dataclass(frozen=True)
class SwitchCase:
    kind: str
    setup: Callable[[Context, Path], dict[str, Any]]
    kill_when: Callable[[str, int, int | None], bool]
    check: Callable[[Context, EncoderRead, JobRead], None]


CASES = [
    # mid-build: the next generation is half written, nothing in service has changed yet
    SwitchCase(
        "reindex",
        _setup_reindex,
        lambda st, d, t: st == "models" and t is not None and 0 < d < t,
        _check_switch(changes_encoder=False),
    ),
    SwitchCase(
        "promote",
        _setup_promote,
        lambda st, d, t: st == "models" and t is not None and 0 < d < t,
        _check_switch(changes_encoder=True),
    ),
    # mid catch-up: the previous encoder's collections get the models registered while the other served
    SwitchCase(
        "rollback",
        _setup_rollback,
        lambda st, d, t: st == "catch-up" and t is not None and 0 < d < t,
        _check_switch(changes_encoder=True, models=MODELS + LATE),
    ),
    # after the state saved at step 100, before the end
    SwitchCase("train", _setup_train, lambda st, d, t: st == "train" and 105 <= d < 145, _check_train),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.kind)
def test_kill_9_mid_job_then_rerun(
    case: SwitchCase,
    db_url: str,
    engine: Engine,
    embedder: LocusEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.kind == "train" and not db_url.startswith("sqlite"):
        pytest.skip("training resumes from its state file: the database side is covered by the other cases")
    monkeypatch.setenv("LOCUS_ENCODER_DIR", str(tmp_path / "encoders"))  # the workers' trained checkpoints
    sessions = make_session_factory(engine)
    qdrant = tmp_path / "qdrant"
    index = QdrantIndex(path=str(qdrant))
    try:
        ctx = Context(session_factory=sessions, index=index, embedder=embedder)
        ctx.ensure_collections()
        params = case.setup(ctx, tmp_path)
        before = encoders.serving_encoder(ctx)
    finally:
        index.close()
    job_wiring.install(Settings(database_url=db_url, import_root=tmp_path, job_dir=tmp_path / "jobs"))
    job = jobs.submit_job(ctx, JobCreate(kind=case.kind, params=params))
    done = kill_then_rerun(Sessions(sessions), job.id, db_url, tmp_path, case.kill_when)

    index = QdrantIndex(path=str(qdrant))
    try:
        case.check(Context(session_factory=sessions, index=index, embedder=embedder), before, done)
    finally:
        index.close()
