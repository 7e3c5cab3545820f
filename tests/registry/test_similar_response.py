"""`similar` ranks by the item-response distance where models share no questions: what a model gets
right by category, with question difficulty from the registry, not only its overall accuracy."""

from __future__ import annotations

import uuid

import pytest

from registry import services
from registry.schemas import EvaluationIn, ModelCreate, QuestionIn
from registry.services import Context, similarity
from tests.registry.test_similar_cache import assert_cached_as_uncached, register

N = 20  # questions per category


def _questions(ctx: Context) -> None:
    services.add_questions(
        ctx,
        [QuestionIn(key=f"a{i}", text=f"What is {i} + {i + 3}?", category="arithmetic") for i in range(N)]
        + [
            QuestionIn(key=f"c{i}", text=f"What does print(len('{'x' * i}')) show?", category="code")
            for i in range(N)
        ],
    )


def _model(ctx: Context, name: str, asked: list[str], right_on: str) -> uuid.UUID:
    evals = [EvaluationIn(question=q, score=1.0 if q.startswith(right_on) else 0.0) for q in asked]
    return services.register_model(ctx, ModelCreate(name=name, evaluations=evals)).id


def test_same_accuracy_opposite_strengths_rank_apart_without_shared_questions(ctx: Context) -> None:
    _questions(ctx)
    first = [f"a{i}" for i in range(10)] + [f"c{i}" for i in range(10)]
    second = [f"a{i}" for i in range(10, N)] + [f"c{i}" for i in range(10, N)]
    query = _model(ctx, "arith-strong", first, right_on="a")
    alike = _model(ctx, "arith-strong-too", second, right_on="a")
    opposite = _model(ctx, "code-strong", second, right_on="c")
    got = {it.model.id: it for it in services.similar_models(ctx, query, k=5).items}
    a, o = got[alike], got[opposite]
    assert a.shared_questions == o.shared_questions == 0  # every model 50% right, nothing shared
    assert a.response_distance is not None and o.response_distance is not None
    assert a.response_distance + 0.3 < o.response_distance  # truth: 0 and 1
    assert a.behaviour_distance == a.response_distance  # nothing shared: the estimate alone
    assert a.profile_distance is not None  # the embedding's view is still reported
    ranked = [it.model.id for it in services.similar_models(ctx, query, k=5).items]
    assert ranked.index(alike) < ranked.index(opposite)
    assert_cached_as_uncached(ctx, [query, alike, opposite])


def test_only_categories_both_were_scored_in_count(ctx: Context) -> None:
    """A model scored on arithmetic only is compared with the query on arithmetic only: its missing code
    scores are not read as anything."""
    _questions(ctx)
    query = _model(ctx, "both", [f"a{i}" for i in range(N)] + [f"c{i}" for i in range(N)], right_on="a")
    arith_only = _model(ctx, "arith-only", [f"a{i}" for i in range(N)], right_on="a")
    got = {it.model.id: it for it in services.similar_models(ctx, query, k=3).items}
    assert got[arith_only].response_distance is not None and got[arith_only].response_distance < 0.3


def test_profiles_of_models_with_many_scores_are_fitted_on_their_evidence_sample(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's profile is fitted on at most MAX_EVIDENCE of its scores (the seeded evidence draw), so a
    model with thousands costs a bounded fit; cached and uncached draw the same ones."""
    monkeypatch.setattr(similarity, "MAX_EVIDENCE", 10)  # every model here has 24 scores
    ids = register(ctx)
    assert_cached_as_uncached(ctx, ids)
    got = services.similar_models(ctx, ids[0], k=3).items
    assert all(it.response_distance is not None for it in got)
    assert max(it.shared_questions for it in got) <= 10  # evidence read on the sample too
