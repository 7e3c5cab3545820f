"""Train an encoder from the registry's own evaluations (the `train` job kind), then promote it."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from api import training
from encoder.checkpoint import load_checkpoint
from registry import jobs
from registry.errors import InvalidInput
from registry.schemas import EvaluationIn, JobCreate, ModelCreate, QuestionIn
from registry.services import Context, encoders
from registry.services import models as model_svc
from registry.services.questions import add_questions
from registry.services.training_data import training_tables
from registry.settings import Settings


def _populate(ctx: Context, n_models: int = 12, n_questions: int = 90) -> None:
    """Two planted families of models on one benchmark: each family answers the same questions right."""
    add_questions(
        ctx,
        [
            QuestionIn(
                key=f"t{i}",
                text=f"Training question {i}: name the {i}th prime after {3 * i}.",
                benchmark="planted",
                category=f"c{i % 3}",
            )
            for i in range(n_questions)
        ],
    )
    rng = np.random.default_rng(0)
    skill = rng.random((2, n_questions))
    for m in range(n_models):
        fam = m % 2
        correct = rng.random(n_questions) < 0.15 + 0.7 * skill[fam]
        model_svc.register_model(
            ctx,
            ModelCreate(
                name=f"planted-{m}",
                evaluations=[EvaluationIn(question=f"t{i}", score=float(c)) for i, c in enumerate(correct)],
            ),
        )


def test_training_tables_are_dense_per_benchmark(ctx: Context) -> None:
    _populate(ctx)
    (table,) = training_tables(ctx)
    assert table.name == "planted" and table.labels.shape == (12, 90) and table.phi.shape[0] == 90
    assert table.n_evaluations == 12 * 90
    with pytest.raises(InvalidInput, match="cannot be trained on"):
        training_tables(ctx, benchmarks=["planted", "absent"])
    with pytest.raises(InvalidInput, match="nothing to train on"):
        training_tables(ctx, min_models=50)


def test_train_job_registers_a_candidate_with_its_comparison(ctx: Context, tmp_path: Path) -> None:
    _populate(ctx)
    encoders.ensure_serving(ctx, str(tmp_path / "serving"))
    settings = Settings(
        database_url="sqlite://", job_dir=tmp_path / "jobs", encoder_dir=tmp_path / "encoders"
    )
    training.install(settings)
    job = jobs.run_job_now(
        ctx,
        JobCreate(kind="train", params={"steps": 12, "eval_k": 24, "holdout_models": 0.25, "min_models": 4}),
    )
    assert job.state == "succeeded", job.error
    assert job.result is not None
    entry = encoders.get_encoder(ctx, uuid.UUID(job.result["encoder_id"]))
    assert entry.status == "candidate" and Path(entry.path).is_dir()
    assert entry.fingerprint != ctx.embedder.fingerprint
    planted = entry.report["comparison"]["planted"]
    assert planted["held_out_models"] == 3
    for side in ("trained", "serving"):
        assert set(planted[side]) >= {"pearson", "routing_hit1", "correctness_acc"}
        assert planted[side]["routing_hit1"] is not None
    assert entry.report["data"]["planted"]["evaluations"] == 12 * 90
    assert not (tmp_path / "jobs" / f"train-{job.id}").exists()  # training state removed once registered


def test_train_job_with_serving_weights_fits_only_the_metric(ctx: Context, tmp_path: Path) -> None:
    """weights=serving trains nothing: the candidate holds the serving encoder's weights and a newly
    fitted stored-vector metric (so another fingerprint); without metric steps it is refused when
    submitted, since it would be the serving encoder again."""
    _populate(ctx)
    encoders.ensure_serving(ctx, str(tmp_path / "serving"))
    settings = Settings(
        database_url="sqlite://", job_dir=tmp_path / "jobs", encoder_dir=tmp_path / "encoders"
    )
    training.install(settings)
    with pytest.raises(InvalidInput, match="metric_steps"):
        jobs.submit_job(ctx, JobCreate(kind="train", params={"weights": "serving", "metric_steps": 0}))
    params = {"weights": "serving", "metric_steps": 20, "eval_k": 24, "holdout_models": 0.25, "min_models": 4}
    job = jobs.run_job_now(ctx, JobCreate(kind="train", params=params))
    assert job.state == "succeeded", job.error
    assert job.result is not None
    entry = encoders.get_encoder(ctx, uuid.UUID(job.result["encoder_id"]))
    assert entry.status == "candidate" and entry.fingerprint != ctx.embedder.fingerprint
    assert entry.report["kind"] == "metric-from-registry" and entry.report["steps_run"] == 0
    assert entry.report["weights_from"] == ctx.embedder.fingerprint
    assert entry.report["metric"]["loss_last"] < entry.report["metric"]["loss_first"]
    model, _ = load_checkpoint(entry.path)
    serving = ctx.embedder.model  # type: ignore[attr-defined]
    assert model.stored_metric is not None
    weights = {k: v for k, v in model.state_dict().items() if k != "metric"}
    assert weights.keys() == {k for k in serving.state_dict() if k != "metric"}
    assert all(torch.equal(v, serving.state_dict()[k]) for k, v in weights.items())


def test_train_job_refuses_files_outside_the_import_root(ctx: Context, tmp_path: Path) -> None:
    settings = Settings(database_url="sqlite://", job_dir=tmp_path / "jobs", import_root=tmp_path / "root")
    (tmp_path / "root").mkdir()
    training.install(settings)
    with pytest.raises(Exception, match="outside LOCUS_IMPORT_ROOT"):
        jobs.submit_job(ctx, JobCreate(kind="train", params={"data": ["../elsewhere"]}))
