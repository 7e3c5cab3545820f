"""The cached decision pool answers exactly as the uncached scan, and every write shows at once."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from registry import repositories as repo
from registry import services
from registry.db import make_engine, make_session_factory
from registry.decisions.errors import UnknownModelError
from registry.decisions.schemas import PortfolioFilters, PortfolioRequest, RouteRead, RouteRequest
from registry.decisions.service import (
    brief,
    fallbacks,
    load_pool,
    portfolio,
    reference_queries,
    route_queries,
)
from registry.ports import ModelFilter
from registry.schemas import EvaluationIn, ModelCreate, ModelUpdate, QuestionIn
from registry.services import Context

N_Q = 24


def register(ctx: Context, n_models: int = 8) -> list[uuid.UUID]:
    services.add_questions(
        ctx, [QuestionIn(key=f"q{i}", text=f"What is {i} times {i + 3}?") for i in range(N_Q)]
    )
    rng = np.random.default_rng(0)
    ids = []
    for m in range(n_models):
        evals = [EvaluationIn(question=f"q{i}", score=float(rng.random() < 0.5)) for i in range(N_Q)]
        created = services.register_model(
            ctx,
            ModelCreate(
                name=f"m{m}",
                provider=("acme", "zeta")[m % 2],
                params_b=float(10 * (m + 1)),
                input_price=None if m == 3 else float(m),
                output_price=float(2 * m) if m % 3 else None,
                license="mit" if m % 2 else None,
                tags=["chat"] if m < 4 else ["code"],
                evaluations=evals,
            ),
        )
        ids.append(created.id)
    # one model without evaluations: registered, never embedded, so never in the pool
    services.register_model(ctx, ModelCreate(name="bare", provider="acme"))
    return ids


FILTERS = [
    None,
    ModelFilter(providers=("acme",)),
    ModelFilter(statuses=("active",)),
    ModelFilter(min_params=25.0, max_params=65.0),
    ModelFilter(tags=("chat",)),
    ModelFilter(licenses=("mit",), max_input_price=5.0),
    ModelFilter(max_output_price=8.0),
]


def answer(read: RouteRead) -> dict[str, object]:
    """A route response without what differs by design on every call (a recorded decision's id)."""
    return read.model_dump(exclude={"routes": {"__all__": {"decision_id"}}})


def assert_same_pool(ctx: Context, flt: ModelFilter | None) -> None:
    cached, uncached = load_pool(ctx, flt), load_pool(ctx, flt, cached=False)
    assert cached.ids == uncached.ids
    assert np.array_equal(cached.vectors, uncached.vectors)
    assert [brief(r) for r in cached.rows] == [brief(r) for r in uncached.rows]
    # the price and status columns (sliced from the full pool's, built once per key) match the rows
    assert np.array_equal(cached.prices(), uncached.prices(), equal_nan=True)
    assert np.array_equal(cached.active(), uncached.active())
    briefed = [np.nan if b.price is None else b.price for b in map(brief, cached.rows)]
    assert np.array_equal(cached.prices(), np.array(briefed, np.float64), equal_nan=True)
    assert cached.active().tolist() == [r.status == "active" for r in cached.rows]
    with ctx.session_factory() as s:  # and the briefs the ORM rows give, as before the cache
        rows = repo.get_models(s, cached.ids)
        assert [brief(r) for r in cached.rows] == [brief(rows[m]) for m in cached.ids]


def test_cached_pool_answers_as_the_uncached_scan(ctx: Context) -> None:
    ids = register(ctx)
    services.update_model(ctx, ids[1], ModelUpdate(status="deprecated"))
    for flt in [*FILTERS, ModelFilter(exclude_ids=(ids[0],)), ModelFilter(include_ids=(ids[2], ids[5]))]:
        assert_same_pool(ctx, flt)
        assert_same_pool(ctx, flt)  # warm
    assert len(load_pool(ctx, None).ids) == len(ids)  # the model without evaluations is not embedded
    req = RouteRequest(queries=["What is 3 times 6?", "Name a prime"], top_k=3)
    assert answer(route_queries(ctx, req)) == answer(route_queries(ctx, req))
    # fallbacks brief their models from plain columns: the same briefs as the ORM rows give
    got = fallbacks(ctx, ids[3], 4)
    with ctx.session_factory() as s:
        rows = repo.get_models(s, [it.model.id for it in got.items])
        assert [it.model for it in got.items] == [brief(rows[it.model.id]) for it in got.items]
    assert got.items and any(it.model.price is None for it in fallbacks(ctx, ids[0], 7).items)


def test_every_write_changes_the_cached_pool(ctx: Context) -> None:
    ids = register(ctx)
    load_pool(ctx, None)  # warm the cache
    services.update_model(ctx, ids[0], ModelUpdate(status="unavailable", params_b=500.0))
    pool = load_pool(ctx, None)
    assert pool.rows[pool.index_of()[ids[0]]].status == "unavailable"
    assert ids[0] not in load_pool(ctx, ModelFilter(statuses=("active",))).ids
    assert ids[0] in load_pool(ctx, ModelFilter(min_params=400.0)).ids
    services.update_model(ctx, ids[1], ModelUpdate(tags=["chat", "new"]))  # a tag edit alone
    assert load_pool(ctx, ModelFilter(tags=("new",))).ids == [ids[1]]
    new = services.register_model(
        ctx,
        ModelCreate(name="late", evaluations=[EvaluationIn(question=f"q{i}", score=1.0) for i in range(N_Q)]),
    )
    assert new.id in load_pool(ctx, None).ids
    services.delete_model(ctx, ids[2])
    assert ids[2] not in load_pool(ctx, None).ids
    before = load_pool(ctx, None).vectors[load_pool(ctx, None).index_of()[ids[3]]].copy()
    services.add_evaluations(ctx, ids[3], [EvaluationIn(question=f"q{i}", score=0.0) for i in range(N_Q)])
    after = load_pool(ctx, None)
    assert not np.array_equal(after.vectors[after.index_of()[ids[3]]], before)  # re-embedded
    for flt in FILTERS:
        assert_same_pool(ctx, flt)
    # decisions read the new state: an unavailable model is never chosen
    routed = route_queries(ctx, RouteRequest(queries=["What is 2 times 5?"], top_k=10))
    assert routed.routes[0].chosen.id != ids[0]
    assert all(r.model.id != ids[2] for r in routed.routes[0].ranked)
    port = portfolio(ctx, PortfolioRequest(k=2, filters=PortfolioFilters(status=["active"])))
    assert ids[0] not in {b.id for b in port.chosen}


@pytest.fixture
def second_process(db_url: str, engine: Engine, ctx: Context, tmp_path: Path) -> Context:
    """Another process on the same database: its own engine, vector index (rebuilt from SQL) and caches."""
    register(ctx)
    other = Context(
        session_factory=make_session_factory(make_engine(db_url)),
        index=type(ctx.index)(path=str(tmp_path / "qdrant-b")),  # type: ignore[call-arg]
        embedder=ctx.embedder,
    )
    services.reindex(other)
    return other


def test_two_processes_answer_alike_after_a_write(ctx: Context, second_process: Context) -> None:
    other = second_process
    req = RouteRequest(queries=["What is 4 times 7?"], top_k=8)
    assert answer(route_queries(ctx, req)) == answer(route_queries(other, req))  # both caches warm now
    first = route_queries(ctx, req).routes[0].chosen.id
    services.update_model(ctx, first, ModelUpdate(status="unavailable", input_price=99.0))  # through one
    for c in (ctx, other):
        pool = load_pool(c, None)
        row = pool.rows[pool.index_of()[first]]
        assert (row.status, row.input_price) == ("unavailable", 99.0)
        assert route_queries(c, req).routes[0].chosen.id != first
    assert answer(route_queries(ctx, req)) == answer(route_queries(other, req))


def test_registry_reference_queries_follow_new_questions(ctx: Context) -> None:
    ids = register(ctx)
    phi, cats = reference_queries(ctx, None)
    assert phi.shape == (N_Q, ctx.embedder.query_dim) and set(cats) == {"uncategorised"}
    before = fallbacks(ctx, ids[0], 3)
    assert fallbacks(ctx, ids[0], 3) == before  # warm
    services.add_questions(ctx, [QuestionIn(key="extra", text="Is water wet?", category="physics")])
    phi2, cats2 = reference_queries(ctx, None)
    assert phi2.shape[0] == N_Q + 1 and cats2.count("physics") == 1
    with ctx.session_factory() as s:
        order = [q.id for batch in repo.iter_questions(s) for q in batch]  # id order, as the uncached read
    vecs = ctx.index.get_question_vectors(order)
    assert np.array_equal(phi2, np.stack([vecs[q] for q in order]))
    assert fallbacks(ctx, ids[0], 3).reference_queries == N_Q + 1


def test_named_candidates_answer_alike_from_the_cached_pool(ctx: Context) -> None:
    ids = register(ctx)
    req = RouteRequest(queries=["What is 5 times 8?"], candidates=[ids[4], ids[1], ids[6]], top_k=3)
    cold = answer(route_queries(ctx, req))  # the pool is not cached yet: candidates read from SQL and index
    load_pool(ctx, None)
    assert answer(route_queries(ctx, req)) == cold  # from the cached pool, same order
    services.update_model(ctx, ids[1], ModelUpdate(status="unavailable"))
    routed = route_queries(ctx, req)  # the write made the cached pool stale: read again
    assert [r.model.status for r in routed.routes[0].ranked if r.model.id == ids[1]] == ["unavailable"]
    with pytest.raises(UnknownModelError, match="unknown candidate"):
        route_queries(ctx, req.model_copy(update={"candidates": [ids[0], uuid.uuid4()]}))


def test_named_candidates_route_like_the_pool_and_queries_are_not_persisted(ctx: Context) -> None:
    """Routing over named candidates reads their rows as plain columns (`require_pool_rows`) when the
    pool is not cached, and answers as the cached pool does; the routed query's encoding is kept in
    memory only (regression: each request wrote a cache shard)."""
    ids = register(ctx)
    enc = ctx.embedder.query_encoder  # type: ignore[attr-defined]
    persisted = len(enc.cache)
    req = RouteRequest(queries=[f"Route this new query {uuid.uuid4().hex}"], candidates=ids[:5], top_k=5)
    cold = route_queries(ctx, req)  # nothing cached yet: rows and vectors read for the five
    load_pool(ctx, None)  # now the pool is cached: the subset comes from it
    warm = route_queries(ctx, req)
    assert answer(cold) == answer(warm)
    assert len(enc.cache) == persisted and len(enc.transient) >= 1
    with pytest.raises(UnknownModelError, match="candidate"):
        route_queries(ctx, RouteRequest(queries=["x?"], candidates=[ids[0], uuid.uuid4()]))
