"""Fallbacks rank by behaviour distance, as `similar` does: with shared questions, the candidate that
disagrees least with the model comes first, whatever the embedding order."""

from __future__ import annotations

import uuid

import numpy as np

from registry import services as svc
from registry.decisions import service
from registry.schemas import EvaluationIn, ModelCreate, QuestionIn
from registry.services import Context

N = 64


def _register(ctx: Context, name: str, answers: np.ndarray) -> str:
    model = svc.register_model(
        ctx,
        ModelCreate(
            name=name,
            evaluations=[EvaluationIn(question=f"f{i}", score=float(a)) for i, a in enumerate(answers)],
        ),
    )
    return str(model.id)


def test_fallbacks_rank_by_observed_behaviour(ctx: Context) -> None:
    svc.add_questions(
        ctx, [QuestionIn(key=f"f{i}", text=f"Fallback question {i}: {i} plus {2 * i}?") for i in range(N)]
    )
    rng = np.random.default_rng(5)
    target = rng.integers(0, 2, N)
    model_id = _register(ctx, "target", target)
    flips = {"near": 3, "middle": 16, "far": 40}
    for name, n in flips.items():
        answers = target.copy()
        idx = rng.choice(N, n, replace=False)
        answers[idx] = 1 - answers[idx]
        _register(ctx, name, answers)

    read = service.fallbacks(ctx, uuid.UUID(model_id), k=3)
    assert read.ranked_by == "behaviour"
    assert [f.model.name for f in read.items] == ["near", "middle", "far"]
    for f in read.items:
        assert f.shared_questions == N
        assert f.observed_disagreement == flips[f.model.name] / N
        assert f.behaviour_distance is not None
    by_embedding = service.fallbacks(ctx, uuid.UUID(model_id), k=3, rank_by="embedding")
    assert by_embedding.ranked_by == "embedding"
    distances = [f.distance for f in by_embedding.items]
    assert distances == sorted(distances) and all(f.behaviour_distance is None for f in by_embedding.items)
