"""Fixtures for encoder tests: a small real model and tiny data folders written per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encoder.config import LocusConfig
from encoder.model import LocusModel
from encoder.train import TrainConfig, TrainSource, train

SMALL = LocusConfig(query_dim=24, width=32, heads=2, inducing=8, ffn=64, embed_dim=16, pred_hidden=16)


@pytest.fixture
def small_model() -> LocusModel:
    torch.manual_seed(0)
    model = LocusModel(SMALL)
    model.eval()
    return model


def write_normalised(root: Path, n_models: int = 6, n_questions: int = 40, seed: int = 0) -> Path:
    """A tiny source in the shared normalised layout, with a planted skill structure."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    cats = ["algebra", "history", "code", "law"]
    with (root / "questions.csv").open("w") as f:
        f.write("question_id,text,category\n")
        for q in range(n_questions):
            f.write(f'q{q},"Question number {q}, about {cats[q % 4]}?",{cats[q % 4]}\n')
    skill = rng.uniform(0.1, 0.9, size=(n_models, len(cats)))
    with (root / "labels.csv").open("w") as f:
        f.write("model,question_id,label\n")
        for m in range(n_models):
            for q in range(n_questions):
                f.write(f"model-{m},q{q},{int(rng.random() < skill[m, q % 4])}\n")
    return root


@pytest.fixture(scope="session")
def query_encoder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A query-encoding cache folder shared by the tests of one session."""
    return tmp_path_factory.mktemp("query-cache")


def train_planted(ts: TrainSource, weight: float = 0.0) -> LocusModel:
    """A small encoder trained on a planted pool (geometry loss at `weight`; 0: the LOCUS loss alone)."""
    cfg = TrainConfig(
        steps=120,
        batch_models=16,
        min_set=64,
        max_set=128,
        n_targets=32,
        warmup_steps=5,
        eval_every=40,
        val_k=64,
        geometry_weight=weight,
        group_size=8,
        twins=2,
    )
    torch.manual_seed(0)
    model = LocusModel(SMALL)
    train(model, [ts], cfg, seed=0, progress=False)
    return model
