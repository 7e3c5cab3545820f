"""Use cases end to end on SQLite and PostgreSQL, a local Qdrant and the real (small) encoder."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from registry import services as svc
from registry.errors import (
    EmbeddingMissing,
    Forbidden,
    IndexUnavailable,
    InvalidInput,
    NameTaken,
    NotFound,
    QuestionConflict,
    Unauthenticated,
    UnknownQuestions,
)
from registry.ports import ModelFilter, ModelPoint
from registry.schemas import EvaluationIn, ModelCreate, ModelUpdate, QuestionIn
from registry.services import Context

TOPICS = ["algebra", "biology", "history", "poetry", "chemistry", "law", "music", "geography"]


def questions(n: int, prefix: str = "q") -> list[QuestionIn]:
    return [
        QuestionIn(
            key=f"{prefix}{i}", text=f"Question {i} about {TOPICS[i % len(TOPICS)]}: what is {i} + {i}?"
        )
        for i in range(n)
    ]


def evals(keys: Sequence[str], seed: int) -> list[EvaluationIn]:
    rng = np.random.default_rng(seed)
    return [
        EvaluationIn(question=k, score=float(s)) for k, s in zip(keys, rng.random(len(keys)), strict=True)
    ]


def seed_questions(ctx: Context, n: int = 24) -> list[str]:
    qs = questions(n)
    svc.add_questions(ctx, qs)
    return [q.key for q in qs]


def model_count(ctx: Context) -> int:
    return svc.list_models(ctx).total


def test_register_computes_embedding_and_stores_vector(ctx: Context) -> None:
    keys = seed_questions(ctx)
    m = svc.register_model(
        ctx, ModelCreate(name="alpha", provider="acme", tags=["chat"], evaluations=evals(keys, 1))
    )
    assert m.embedding is not None
    assert m.embedding.n_evaluations == len(keys)
    assert m.embedding.fingerprint == ctx.embedder.fingerprint
    assert m.embedding.vector is not None and len(m.embedding.vector) == ctx.embedder.embedding_dim
    stored = ctx.index.get_model_vectors([m.id])[m.id]
    np.testing.assert_allclose(stored, m.embedding.vector, rtol=1e-6)
    got = svc.get_model(ctx, m.id, include_vector=True)
    assert got.tags == ["chat"] and got.embedding is not None and got.embedding.vector is not None


def test_same_set_in_any_order_gives_identical_vector(ctx: Context) -> None:
    keys = seed_questions(ctx)
    items = evals(keys, 2)
    a = svc.register_model(ctx, ModelCreate(name="a", evaluations=items))
    b = svc.register_model(ctx, ModelCreate(name="b", evaluations=list(reversed(items))))
    assert a.embedding and b.embedding
    assert a.embedding.vector == b.embedding.vector
    # Built in two steps, the same final set also gives the same vector.
    c = svc.register_model(ctx, ModelCreate(name="c", evaluations=items[10:]))
    c2 = svc.add_evaluations(ctx, c.id, items[:10])
    assert c2.embedding and c2.embedding.vector == a.embedding.vector
    sim = svc.similar_models(ctx, a.id, k=2)
    assert {s.model.name for s in sim.items} == {"b", "c"}
    assert all(s.distance == pytest.approx(0.0, abs=1e-5) for s in sim.items)


def test_refine_adds_and_replaces_scores(ctx: Context) -> None:
    keys = seed_questions(ctx)
    m = svc.register_model(ctx, ModelCreate(name="m", evaluations=evals(keys[:12], 3)))
    before = svc.get_model(ctx, m.id, include_vector=True).embedding
    m2 = svc.add_evaluations(ctx, m.id, evals(keys[8:], 4))  # 4 re-sent pairs replace old scores
    assert m2.embedding is not None and m2.embedding.n_evaluations == len(keys)
    assert before is not None and m2.embedding.vector != before.vector
    page = svc.list_evaluations(ctx, m.id, limit=100)
    assert page.total == len(keys)
    new_scores = {e.question: e.score for e in evals(keys[8:], 4)}
    for e in page.items:
        if e.question in new_scores:
            assert e.score == pytest.approx(new_scores[e.question])


def test_inline_questions_are_registered_and_encoded(ctx: Context) -> None:
    items = [
        EvaluationIn(question="new-1", score=1.0, text="What is the capital of France?", benchmark="geo"),
        EvaluationIn(question="new-2", score=0.0, text="Name a noble gas.", category="chemistry"),
    ]
    m = svc.register_model(ctx, ModelCreate(name="inline", evaluations=items))
    assert m.embedding is not None and m.embedding.n_evaluations == 2
    page = svc.list_questions(ctx)
    assert [q.key for q in page.items] == ["new-1", "new-2"]
    vecs = ctx.index.get_question_vectors([q.id for q in page.items])
    assert len(vecs) == 2


def test_unknown_question_names_key_and_writes_nothing(ctx: Context) -> None:
    keys = seed_questions(ctx, 4)
    bad = [*evals(keys, 5), EvaluationIn(question="nope", score=0.5)]
    with pytest.raises(UnknownQuestions, match="'nope'"):
        svc.register_model(ctx, ModelCreate(name="x", evaluations=bad))
    assert model_count(ctx) == 0
    assert ctx.index.count_models() == 0


def test_duplicate_key_in_request_and_text_conflicts(ctx: Context) -> None:
    keys = seed_questions(ctx, 4)
    dup = [EvaluationIn(question=keys[0], score=0.1), EvaluationIn(question=keys[0], score=0.2)]
    with pytest.raises(InvalidInput, match=repr(keys[0])):
        svc.register_model(ctx, ModelCreate(name="x", evaluations=dup))
    conflict = [EvaluationIn(question=keys[0], score=0.1, text="some other text")]
    with pytest.raises(QuestionConflict, match=repr(keys[0])):
        svc.register_model(ctx, ModelCreate(name="x", evaluations=conflict))
    with pytest.raises(QuestionConflict, match="q1"):
        svc.add_questions(ctx, [QuestionIn(key="q1", text="changed")])
    again = svc.add_questions(ctx, questions(6))  # same texts: idempotent
    assert (again.created, again.existing) == (2, 4)
    assert model_count(ctx) == 0


def test_duplicate_name_is_refused(ctx: Context) -> None:
    svc.register_model(ctx, ModelCreate(name="dup"))
    with pytest.raises(NameTaken, match="'dup'"):
        svc.register_model(ctx, ModelCreate(name="dup"))
    other = svc.register_model(ctx, ModelCreate(name="other"))
    with pytest.raises(NameTaken):
        svc.update_model(ctx, other.id, ModelUpdate(name="dup"))


def test_concurrent_registration_of_one_name_has_one_winner(ctx: Context) -> None:
    keys = seed_questions(ctx, 8)
    results: list[str] = []
    barrier = threading.Barrier(4)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            svc.register_model(ctx, ModelCreate(name="race", evaluations=evals(keys, i)))
            results.append("won")
        except NameTaken:
            results.append("taken")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["taken", "taken", "taken", "won"]
    assert model_count(ctx) == 1
    assert ctx.index.count_models() == 1


def test_similar_filters_and_status_change_apply_at_once(ctx: Context) -> None:
    keys = seed_questions(ctx)
    ids = {}
    for i, (prov, params) in enumerate([("acme", 7.0), ("acme", 70.0), ("zeta", 8.0), ("zeta", None)]):
        m = svc.register_model(
            ctx, ModelCreate(name=f"m{i}", provider=prov, params_b=params, evaluations=evals(keys, i))
        )
        ids[m.name] = m.id
    res = svc.similar_models(ctx, ids["m0"], k=10)
    assert len(res.items) == 3 and ids["m0"] not in {s.model.id for s in res.items}
    assert [s.distance for s in res.items] == sorted(s.distance for s in res.items)
    res = svc.similar_models(ctx, ids["m0"], k=10, flt=ModelFilter(providers=("zeta",), max_params=10.0))
    assert [s.model.name for s in res.items] == ["m2"]
    svc.update_model(ctx, ids["m2"], ModelUpdate(status="unavailable"))
    res = svc.similar_models(ctx, ids["m0"], k=10, flt=ModelFilter(statuses=("active",)))
    assert {s.model.name for s in res.items} == {"m1", "m3"}
    # The SQL list applies the same filter.
    page = svc.list_models(ctx, ModelFilter(statuses=("active",), providers=("acme",)))
    assert [m.name for m in page.items] == ["m0", "m1"]


def test_similar_errors(ctx: Context) -> None:
    m = svc.register_model(ctx, ModelCreate(name="bare"))
    with pytest.raises(EmbeddingMissing, match=str(m.id)):
        svc.similar_models(ctx, m.id)
    missing = uuid.uuid4()
    with pytest.raises(NotFound, match=str(missing)):
        svc.similar_models(ctx, missing)


def test_list_filters_tags_and_pagination(ctx: Context) -> None:
    for i in range(5):
        svc.register_model(
            ctx,
            ModelCreate(
                name=f"n{i}", tags=["a", "b"] if i % 2 else ["a"], context_window=1000 * i, license="mit"
            ),
        )
    assert svc.list_models(ctx, ModelFilter(tags=("a", "b"))).total == 2
    assert svc.list_models(ctx, ModelFilter(min_context_window=2000)).total == 3
    page = svc.list_models(ctx, limit=2, offset=2)
    assert [m.name for m in page.items] == ["n2", "n3"] and page.total == 5
    upd = svc.update_model(ctx, page.items[0].id, ModelUpdate(tags=["z"], metadata={"k": 1}))
    assert upd.tags == ["z"] and upd.metadata == {"k": 1}


def test_delete_removes_rows_and_vector(ctx: Context) -> None:
    keys = seed_questions(ctx, 6)
    m = svc.register_model(ctx, ModelCreate(name="gone", tags=["t"], evaluations=evals(keys, 9)))
    svc.delete_model(ctx, m.id)
    with pytest.raises(NotFound):
        svc.get_model(ctx, m.id)
    assert ctx.index.count_models() == 0
    assert svc.list_questions(ctx).total == 6  # questions outlive the model


@dataclass
class FailingIndex:
    """A real index whose model upserts fail, as a network error to a Qdrant server would."""

    inner: Any

    def upsert_models(self, points: Sequence[ModelPoint]) -> None:
        raise ConnectionError("qdrant unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_failed_vector_write_rolls_back_sql(ctx: Context) -> None:
    keys = seed_questions(ctx, 6)
    ok = svc.register_model(ctx, ModelCreate(name="ok", evaluations=evals(keys, 1)))
    broken = Context(ctx.session_factory, FailingIndex(ctx.index), ctx.embedder)
    inline = [EvaluationIn(question="fresh", score=1.0, text="A brand new question?")]
    with pytest.raises(IndexUnavailable, match="ConnectionError"):
        svc.register_model(broken, ModelCreate(name="half", evaluations=[*evals(keys, 2), *inline]))
    assert [m.name for m in svc.list_models(ctx).items] == ["ok"]
    assert svc.list_questions(ctx).total == 6  # the inline question was rolled back too
    with pytest.raises(IndexUnavailable):
        svc.add_evaluations(broken, ok.id, evals(keys, 3))
    after = svc.get_model(ctx, ok.id)
    assert after.embedding is not None and after.embedding.n_evaluations == 6
    scores = {e.question: e.score for e in svc.list_evaluations(ctx, ok.id).items}
    assert scores == {e.question: pytest.approx(e.score) for e in evals(keys, 1)}
    with pytest.raises(IndexUnavailable):
        svc.update_model(broken, ok.id, ModelUpdate(status="deprecated"))
    assert svc.get_model(ctx, ok.id).status == "active"


def test_reindex_rebuilds_identical_vectors(ctx: Context) -> None:
    keys = seed_questions(ctx, 10)
    a = svc.register_model(ctx, ModelCreate(name="a", evaluations=evals(keys, 1)))
    svc.register_model(ctx, ModelCreate(name="b", evaluations=evals(keys, 2)))
    svc.register_model(ctx, ModelCreate(name="empty"))
    ctx.index.reset()
    assert ctx.index.count_models() == 0
    seen: list[tuple[str, int, int]] = []
    rep = svc.reindex(ctx, progress=lambda *a: seen.append(a))
    assert (rep.questions, rep.models, rep.models_without_evaluations) == (10, 2, 1)
    assert seen[-1] == ("models", 3, 3)
    vec = ctx.index.get_model_vectors([a.id])[a.id]
    assert a.embedding is not None
    np.testing.assert_allclose(vec, a.embedding.vector, rtol=1e-6)
    assert svc.stale_models(ctx) == 0


@dataclass
class Table:
    name: str
    question_ids: list[str]
    texts: list[str]
    categories: list[str]
    model_names: list[str]
    labels: np.ndarray


def test_import_source_loads_everything_once(ctx: Context) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((5, 12)) > 0.5).astype(np.float32)
    labels[0, :3] = np.nan
    table = Table(
        name="bench",
        question_ids=[str(i) for i in range(12)],
        texts=[q.text for q in questions(12)],
        categories=["c"] * 12,
        model_names=[f"model-{i}" for i in range(5)],
        labels=labels,
    )
    rep = svc.import_source(ctx, table, limit_models=4)
    assert (rep.questions_created, rep.models_created, rep.evaluations) == (12, 4, 4 * 12 - 3)
    page = svc.list_models(ctx)
    assert page.total == 4 and all(m.embedding is not None for m in page.items)
    assert page.items[0].embedding is not None and page.items[0].embedding.n_evaluations == 9
    assert svc.list_questions(ctx, benchmark="bench").items[0].key.startswith("bench:")
    rep2 = svc.import_source(ctx, table)  # re-import: existing questions and models are reused
    assert (rep2.questions_created, rep2.models_created, rep2.models_updated) == (0, 1, 4)
    assert ctx.index.count_models() == 5
    bad = Table("bad", ["1"], ["t"], ["c"], ["m"], np.array([[1.5]], dtype=np.float32))
    with pytest.raises(InvalidInput, match="bad"):
        svc.import_source(ctx, bad)


def test_api_keys(ctx: Context) -> None:
    created = svc.create_api_key(ctx, "ci", ["write"])
    assert created.key.startswith("lr_") and created.prefix == created.key[:10]
    assert svc.authenticate(ctx, created.key, "read").id == created.id
    assert svc.authenticate(ctx, created.key, "write").name == "ci"
    with pytest.raises(Forbidden, match="admin"):
        svc.authenticate(ctx, created.key, "admin")
    with pytest.raises(Unauthenticated):
        svc.authenticate(ctx, "lr_wrong", "read")
    with pytest.raises(Unauthenticated):
        svc.authenticate(ctx, None, "read")
    svc.revoke_api_key(ctx, created.id)
    with pytest.raises(Unauthenticated):
        svc.authenticate(ctx, created.key, "read")
    assert svc.list_api_keys(ctx)[0].revoked_at is not None
    with pytest.raises(InvalidInput, match="superuser"):
        svc.create_api_key(ctx, "x", ["superuser"])


def test_embed_evaluations_writes_nothing(ctx: Context) -> None:
    keys = seed_questions(ctx, 8)
    items = evals(keys, 1)
    m = svc.register_model(ctx, ModelCreate(name="m", evaluations=items))
    vec = svc.embed_evaluations(ctx, list(reversed(items)))
    assert m.embedding is not None
    np.testing.assert_allclose(vec, m.embedding.vector, rtol=1e-6)
    near = svc.nearest_to_vector(ctx, vec, 1)
    assert near[0].model.id == m.id
    assert model_count(ctx) == 1
