"""The import job: a cancelled or failed import leaves SQL and vectors in line; re-runs are safe."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.importing import load_batch
from registry import repositories as repo
from registry.errors import JobCancelled
from registry.importers import ImportBatch, ImportOptions
from registry.jobs.importing import import_table
from registry.services import Context
from registry.tables import EvaluationRow, ModelRow, QuestionRow
from tests.jobs.data import write_normalised


class Handle:
    """A JobHandle that records reports and, optionally, cancels at a given stage and count."""

    def __init__(self, cancel_at: tuple[str, int] | None = None, attempt: int = 1) -> None:
        self.reports: list[tuple[str, int, int | None]] = []
        self.lines: list[str] = []
        self.cancel_at = cancel_at
        self._attempt = attempt

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(int=0)

    @property
    def params(self) -> dict[str, Any]:
        return {}

    @property
    def attempt(self) -> int:
        return self._attempt

    def progress(self, stage: str, done: int, total: int | None) -> None:
        self.reports.append((stage, done, total))
        if self.cancel_at is not None and stage == self.cancel_at[0] and done >= self.cancel_at[1]:
            raise JobCancelled("cancelled by the test")

    def log(self, message: str) -> None:
        self.lines.append(message)


def batch(tmp: Path, name: str, *, models: int, questions: int, seed: int) -> ImportBatch:
    folder = write_normalised(tmp / f"{name}-{seed}", models=models, questions=questions, seed=seed)
    return load_batch(folder, "normalised", ImportOptions(name="syn"))


def state(ctx: Context) -> dict[str, Any]:
    """What SQL and the index hold: model ids, evaluation count, vectors by id."""
    with ctx.session_factory() as s:
        sql_ids = set(repo.iter_model_ids(s))
        n_evals = s.query(EvaluationRow).count()
        n_questions = s.query(QuestionRow).count()
        names = [r.name for r in s.query(ModelRow)]
        embedded = {r.id: r.embedding.n_evaluations for r in s.query(ModelRow) if r.embedding is not None}
    ids, vecs = ctx.index.scan_models()
    return {
        "sql_ids": sql_ids,
        "evaluations": n_evals,
        "questions": n_questions,
        "names": names,
        "embedded": embedded,
        "vectors": dict(zip(ids, vecs, strict=True)),
    }


def assert_consistent(st: dict[str, Any]) -> None:
    assert set(st["vectors"]) == st["sql_ids"] == set(st["embedded"])  # exactly one vector per model
    assert len(st["names"]) == len(set(st["names"]))  # no duplicate models


def test_cancelled_import_rolls_back_and_a_rerun_completes(ctx: Context, tmp_path: Path) -> None:
    first = batch(tmp_path, "a", models=12, questions=30, seed=1)
    report = import_table(ctx, first, Handle())
    assert report["models_created"] == 12 and report["evaluations"] == 12 * 30
    before = state(ctx)
    assert_consistent(before)

    # Same 12 models with other scores on more questions, and 24 new models: cancelled mid-embedding,
    # after the existing models' new vectors (first 16 rows) were already upserted.
    second = batch(tmp_path, "b", models=36, questions=60, seed=2)
    h = Handle(cancel_at=("embeddings", 32))
    with pytest.raises(JobCancelled):
        import_table(ctx, second, h)
    assert ("embeddings", 32, 36) in h.reports
    after = state(ctx)
    assert_consistent(after)
    assert after["sql_ids"] == before["sql_ids"] and after["evaluations"] == before["evaluations"]
    assert after["questions"] == 60  # the new questions were committed first (with their vectors)
    for mid, vec in before["vectors"].items():  # vectors made from the committed scores again
        np.testing.assert_allclose(after["vectors"][mid], vec, rtol=1e-5, atol=1e-6)
    assert any("rolled back" in line for line in h.lines)

    rerun = import_table(ctx, second, Handle(attempt=2))
    assert rerun["models_created"] == 24 and rerun["models_updated"] == 12
    final = state(ctx)
    assert_consistent(final)
    assert len(final["sql_ids"]) == 36 and final["evaluations"] == 36 * 60
    assert ctx.index.count_models() == 36


def test_import_twice_is_idempotent(ctx: Context, tmp_path: Path) -> None:
    src = batch(tmp_path, "c", models=8, questions=25, seed=3)
    one = import_table(ctx, src, Handle())
    st1 = state(ctx)
    again = import_table(ctx, src, Handle(attempt=2))
    st2 = state(ctx)
    assert one["sources_created"] == 1 and again["sources_created"] == 0 and again["sources_existing"] == 1
    assert again["models_created"] == 0 and again["questions_created"] == 0
    assert st1["sql_ids"] == st2["sql_ids"] and st1["evaluations"] == st2["evaluations"] == 8 * 25
    assert_consistent(st2)
    for mid, vec in st1["vectors"].items():
        np.testing.assert_allclose(st2["vectors"][mid], vec, rtol=1e-5, atol=1e-6)


def test_chunked_import_keeps_finished_chunks_on_cancel(ctx: Context, tmp_path: Path) -> None:
    """Models are written about `chunk_evaluations` scores per transaction; a cancel in the third
    chunk keeps the first two (consistent), and a re-run completes the import."""
    src = batch(tmp_path, "d", models=20, questions=30, seed=6)  # 600 scores: chunks of 5 models
    h = Handle(cancel_at=("embeddings", 12))
    with pytest.raises(JobCancelled):
        import_table(ctx, src, h, chunk_evaluations=150)
    assert any("in 4 transactions" in line for line in h.lines)
    assert ("evaluations", 6, 20) in h.reports  # progress counts models of all chunks
    mid = state(ctx)
    assert_consistent(mid)
    assert sorted(mid["names"]) == [f"m{i:04d}" for i in range(10)] and mid["evaluations"] == 10 * 30
    done = import_table(ctx, src, Handle(attempt=2), chunk_evaluations=150)
    assert (done["models_created"], done["models_updated"], done["evaluations"]) == (10, 10, 600)
    assert (done["sources_created"], done["sources_existing"]) == (0, 1)
    final = state(ctx)
    assert_consistent(final)
    assert len(final["sql_ids"]) == 20 and final["evaluations"] == 600
