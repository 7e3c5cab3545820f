"""`similar`'s cached behaviour inputs answer exactly as reading SQL, and every score write shows at once."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from registry import repositories as repo
from registry import services
from registry.db import make_engine, make_session_factory
from registry.errors import NotFound
from registry.ports import ModelFilter
from registry.schemas import EvaluationIn, ModelCreate, ModelUpdate, QuestionIn, SimilarModel
from registry.services import Context, similarity
from registry.services.models import nearest_to_vector

N_Q = 40


def register(ctx: Context, n_models: int = 7) -> list[uuid.UUID]:
    """Models scored on overlapping, partly disjoint question sets, with fractional scores."""
    services.add_questions(
        ctx, [QuestionIn(key=f"q{i}", text=f"How many legs have {i} ants?") for i in range(N_Q)]
    )
    rng = np.random.default_rng(1)
    ids = []
    for m in range(n_models):
        asked = sorted(rng.choice(N_Q, 24, replace=False).tolist())
        evals = [
            EvaluationIn(question=f"q{i}", score=float(rng.integers(0, 5)) / 4 * 0.9 + 0.01 * m)
            for i in asked
        ]
        ids.append(services.register_model(ctx, ModelCreate(name=f"m{m}", evaluations=evals)).id)
    return ids


def candidates(ctx: Context, model_id: uuid.UUID) -> list[SimilarModel]:
    vec = ctx.index.get_model_vectors([model_id])[model_id]
    return nearest_to_vector(ctx, vec, 30, ModelFilter(exclude_ids=(model_id,)))


def assert_cached_as_uncached(ctx: Context, ids: list[uuid.UUID]) -> None:
    for m in ids:
        items = candidates(ctx, m)
        uncached = similarity.rerank(ctx, m, items, 5, cached=False)
        assert similarity.rerank(ctx, m, items, 5) == uncached
        assert similarity.rerank(ctx, m, items, 5) == uncached  # warm


def test_cached_behaviour_distance_answers_as_the_uncached(ctx: Context) -> None:
    ids = register(ctx)
    assert_cached_as_uncached(ctx, ids)
    got = services.similar_models(ctx, ids[0], k=4)
    assert got.items == similarity.rerank(ctx, ids[0], candidates(ctx, ids[0]), 4, cached=False)[0]
    assert any(it.shared_questions for it in got.items) and all(
        it.behaviour_distance is not None for it in got.items
    )


def test_every_path_computes_profile_distances_in_the_batch_similar_uses(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pair's profile distance is the predictor's float32 output, whose last bits depend on how many
    models share its batch: `similar` and the uncached re-rank (and fallbacks) must ask for the same
    batch, or their answers differ (the test above failed intermittently when they did not)."""
    ids = register(ctx)
    batches: list[np.ndarray] = []
    predict = ctx.embedder.predict

    def spy(z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        batches.append(np.array(z))
        return predict(z, phi)

    monkeypatch.setattr(ctx.embedder, "predict", spy)
    services.similar_models(ctx, ids[0], k=4)
    served, batches[:] = list(batches), []
    similarity.rerank(ctx, ids[0], candidates(ctx, ids[0]), 4, cached=False)
    assert served and len(batches) == len(served)
    assert all(np.array_equal(a, b) for a, b in zip(served, batches, strict=True))


def test_a_score_write_changes_the_cached_evidence(ctx: Context) -> None:
    ids = register(ctx)
    before = {it.model.id: it for it in services.similar_models(ctx, ids[0], k=6).items}
    # ids[1] now answers every question exactly as ids[0] did: observed disagreement 0 on all of them
    with ctx.session_factory() as s:
        theirs = repo.model_scores(s, [ids[0]])[ids[0]]
        keys = {q: r.key for q, r in repo.get_questions(s, [q for q, _ in theirs]).items()}
    services.add_evaluations(ctx, ids[1], [EvaluationIn(question=keys[q], score=y) for q, y in theirs])
    after = {it.model.id: it for it in services.similar_models(ctx, ids[0], k=6).items}
    assert after[ids[1]].observed_disagreement == 0.0
    assert after[ids[1]].shared_questions == len(theirs) != before[ids[1]].shared_questions
    assert_cached_as_uncached(ctx, ids)


def test_a_write_keeps_the_cached_scores_of_the_models_it_did_not_change(ctx: Context) -> None:
    """After a write, the next request re-reads only the written model's scores (and the totals and fits
    every model's scores feed), and still answers exactly as reading everything from SQL."""
    from registry.services.behaviour_cache import cache_of

    ids = register(ctx)
    services.similar_models(ctx, ids[0], k=6)
    cache = cache_of(ctx)
    before = dict(cache.scores)
    assert set(before) == set(ids)
    services.add_evaluations(ctx, ids[1], [EvaluationIn(question=f"q{i}", score=1.0) for i in range(N_Q)])
    with ctx.session_factory() as s:  # every other model is deleted from under a cached entry too
        s.delete(repo.get_model(s, ids[2]))
        s.commit()
    services.similar_models(ctx, ids[0], k=6)
    after = cache.scores
    assert all(after[m] is before[m] for m in ids if m not in (ids[1], ids[2]))  # kept, not re-read
    assert after[ids[1]] is not before[ids[1]] and len(after[ids[1]].scores) == N_Q  # re-read: new scores
    # the deleted model's vector is still a candidate (an orphan): its entry is read again, now empty
    assert ids[2] not in after or (after[ids[2]] is not before[ids[2]] and not len(after[ids[2]].scores))
    assert cache.responses.get(ids[0]) is not None  # refitted under the new question totals
    assert_cached_as_uncached(ctx, [m for m in ids if m != ids[2]])


def test_requests_arriving_together_after_a_write_read_the_question_totals_once(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = register(ctx)
    for m in ids:  # warm: every question's totals are in play
        services.similar_models(ctx, m, k=3)
    services.add_evaluations(ctx, ids[1], [EvaluationIn(question=f"q{i}", score=0.0) for i in range(N_Q)])
    reads: list[int] = []
    real = repo.question_score_totals

    def counted(s: Any, qids: Any) -> Any:
        reads.append(len(qids))
        return real(s, qids)

    monkeypatch.setattr(repo, "question_score_totals", counted)
    with ThreadPoolExecutor(len(ids)) as pool:
        list(pool.map(lambda m: services.similar_models(ctx, m, k=3), ids))
    assert reads == [N_Q]  # one read, of every question in play before the write
    monkeypatch.setattr(repo, "question_score_totals", real)
    assert_cached_as_uncached(ctx, ids)


@pytest.mark.parametrize("rank_by", ["behaviour", "embedding"])
def test_orphan_vectors_are_skipped_and_an_orphan_model_is_not_found(ctx: Context, rank_by: str) -> None:
    """A vector whose SQL row is gone (a failed delete) is never answered, even when it ranks first; a
    `similar` of such a model is NotFound, not an answer from its leftover vector."""
    ids = register(ctx)
    nearest = [it.model.id for it in services.similar_models(ctx, ids[0], k=6, rank_by=rank_by).items]
    orphans = nearest[:2]  # the two best answers lose their rows; their vectors stay in the index
    with ctx.session_factory() as s, s.begin():
        for m in orphans:
            s.delete(repo.get_model(s, m))
    assert set(ctx.index.get_model_vectors(orphans)) == set(orphans)
    got = [it.model.id for it in services.similar_models(ctx, ids[0], k=4, rank_by=rank_by).items]
    assert got == nearest[2:6]  # the rest keep their order
    with pytest.raises(NotFound):
        services.similar_models(ctx, orphans[0], k=3, rank_by=rank_by)  # type: ignore[arg-type]


@pytest.fixture
def second_process(db_url: str, engine: Engine, ctx: Context, tmp_path: Path) -> Context:
    """Another process on the same database: its own engine, vector index (rebuilt from SQL) and caches."""
    other = Context(
        session_factory=make_session_factory(make_engine(db_url)),
        index=type(ctx.index)(path=str(tmp_path / "qdrant-b")),  # type: ignore[call-arg]
        embedder=ctx.embedder,
    )
    return other


def test_two_processes_answer_alike_after_a_write(ctx: Context, second_process: Context) -> None:
    ids = register(ctx)
    other = second_process
    services.reindex(other)
    assert services.similar_models(ctx, ids[2], k=6) == services.similar_models(other, ids[2], k=6)  # warm
    services.add_evaluations(ctx, ids[3], [EvaluationIn(question=f"q{i}", score=1.0) for i in range(N_Q)])
    services.reindex(other)  # local mode: the second process's own index follows SQL only by reindex
    a, b = services.similar_models(ctx, ids[2], k=6), services.similar_models(other, ids[2], k=6)
    assert a == b
    shared = {it.model.id: it.shared_questions for it in a.items}
    assert shared[ids[3]] == 24  # ids[3] is now scored on every question, ids[2] on 24


def test_cached_profile_distances_follow_a_candidates_new_embedding(ctx: Context) -> None:
    """A model's predicted-profile distances are cached with the exact candidate ids they were computed for;
    a write that re-embeds one of those candidates drops them, so the next answer predicts from the new
    vector (the stale distance would be served otherwise: the candidate set can be unchanged)."""
    from registry.services.behaviour_cache import cache_of

    ids = register(ctx)
    first = {it.model.id: it.profile_distance for it in services.similar_models(ctx, ids[0], k=6).items}
    cache = cache_of(ctx)
    assert ids[0] in cache.profiles and ids[0] in cache.profiled_in[ids[1]]
    services.add_evaluations(ctx, ids[1], [EvaluationIn(question=f"q{i}", score=0.0) for i in range(N_Q)])
    got = services.similar_models(ctx, ids[0], k=6)
    after = {it.model.id: it.profile_distance for it in got.items}
    assert after[ids[1]] != first[ids[1]]
    assert got.items == similarity.rerank(ctx, ids[0], candidates(ctx, ids[0]), 6, cached=False)[0]
    assert_cached_as_uncached(ctx, ids)


@pytest.mark.parametrize("rank_by", ["behaviour", "embedding"])
def test_a_neighbours_new_name_tags_and_status_show_at_once(
    ctx: Context, second_process: Context, rank_by: str
) -> None:
    """`similar`'s neighbour records are cached per metadata version: a PATCH (columns or tags alone) is
    seen by the next answer, in this process and in another one."""
    ids = register(ctx)
    other = second_process
    services.reindex(other)
    before = services.similar_models(ctx, ids[0], k=6, rank_by=rank_by)  # type: ignore[arg-type]
    assert before == services.similar_models(other, ids[0], k=6, rank_by=rank_by)  # type: ignore[arg-type]
    n = before.items[0].model.id
    services.update_model(ctx, n, ModelUpdate(name="renamed", tags=["moved"]))
    for c in (ctx, other):
        got = {it.model.id: it.model for it in services.similar_models(c, ids[0], k=6, rank_by=rank_by).items}  # type: ignore[arg-type]
        assert (got[n].name, got[n].tags) == ("renamed", ["moved"])
    services.update_model(other, n, ModelUpdate(tags=[]))  # a tag-only change, from the other process
    got = {it.model.id: it.model for it in services.similar_models(ctx, ids[0], k=6, rank_by=rank_by).items}  # type: ignore[arg-type]
    assert got[n].tags == []


def test_a_repeated_request_is_answered_again_after_any_write(ctx: Context) -> None:
    """A ranked answer is reused only until the next write, even one to a model outside its candidates:
    that write moves every question's difficulty, so every item-response distance."""
    ids = register(ctx)
    cands = [(m, 0.1 * i) for i, m in enumerate(ids[1:5])]
    first = similarity.rank_candidates(ctx, ids[0], cands, 3)
    assert similarity.rank_candidates(ctx, ids[0], cands, 3) == first
    services.add_evaluations(ctx, ids[6], [EvaluationIn(question=f"q{i}", score=1.0) for i in range(N_Q)])
    again = similarity.rank_candidates(ctx, ids[0], cands, 3)
    assert again == similarity._rank(ctx, ids[0], cands, 3, cached=False)
    assert [e["response_distance"] for _, _, e in again[0]] != [
        e["response_distance"] for _, _, e in first[0]
    ]


def test_answers_behind_many_orphans_carry_their_profile_distance(ctx: Context) -> None:
    """Profile distances are computed for the first k + ORPHAN_SLACK of the ranking only; when more orphan
    vectors than that rank ahead of an answer, the answer still carries its profile distance."""
    ids = register(ctx)
    nearest = [it.model.id for it in services.similar_models(ctx, ids[0], k=6).items]
    orphans = nearest[: similarity.ORPHAN_SLACK + 1]
    with ctx.session_factory() as s, s.begin():
        for m in orphans:
            s.delete(repo.get_model(s, m))
    got = services.similar_models(ctx, ids[0], k=2)
    assert [it.model.id for it in got.items] == nearest[len(orphans) : len(orphans) + 2]
    assert all(it.profile_distance is not None for it in got.items)
    other = next(m for m in ids[1:] if m not in orphans)
    items = services.similar_models(ctx, other, k=3).items
    assert all(it.profile_distance is not None for it in items), [
        (it.model.id in orphans, it.profile_distance, it.response_distance) for it in items
    ]
