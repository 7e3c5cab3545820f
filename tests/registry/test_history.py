"""Embedding history: one row per (re-)embedding in the writing transaction, distances to the previous
vector under the same encoder, bounded per model, and GET /v1/models/{id}/history."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from registry import services
from registry.errors import QuestionConflict
from registry.schemas import EvaluationIn, ModelCreate
from registry.services import Context
from registry.services.history import model_history, neighbour_scale, record_embeddings
from registry.tables import EmbeddingHistoryRow
from tests.api.conftest import admin, client, reader, writer

__all__ = ["admin", "client", "reader", "writer"]


def evals(lo: int, hi: int, seed: int = 0) -> list[EvaluationIn]:
    rng = np.random.default_rng(seed)
    return [
        EvaluationIn(
            question=f"h{i}", score=float(rng.random() < 0.5), text=f"History question {i} about {i * 7}?"
        )
        for i in range(lo, hi)
    ]


def rows_of(ctx: Context, model_id: uuid.UUID) -> list[EmbeddingHistoryRow]:
    with ctx.session_factory() as s:
        stmt = select(EmbeddingHistoryRow).where(EmbeddingHistoryRow.model_id == model_id)
        return sorted(s.scalars(stmt), key=lambda r: r.created_at)


def test_every_embedding_is_recorded_with_its_distance_to_the_previous(ctx: Context) -> None:
    m = services.register_model(ctx, ModelCreate(name="a", evaluations=evals(0, 20)))
    v1 = ctx.index.get_model_vectors([m.id])[m.id]
    services.add_evaluations(ctx, m.id, evals(20, 40, seed=1))
    v2 = ctx.index.get_model_vectors([m.id])[m.id]
    services.reindex(ctx)
    rows = rows_of(ctx, m.id)
    assert [r.reason for r in rows] == ["register", "evaluations", "reindex"]
    assert [r.n_evaluations for r in rows] == [20, 40, 40]
    assert rows[0].distance_prev is None
    assert rows[1].distance_prev is not None
    assert abs(rows[1].distance_prev - float(np.linalg.norm(v2 - v1))) < 1e-5
    assert np.allclose(rows[1].vector, v2, atol=1e-6)
    assert rows[2].distance_prev is not None and rows[2].distance_prev < 1e-5  # same encoder, same data
    assert all(r.fingerprint == ctx.embedder.fingerprint for r in rows)
    # a model registered without evaluations has no vector, hence no history
    empty = services.register_model(ctx, ModelCreate(name="empty"))
    assert rows_of(ctx, empty.id) == []


def test_a_failed_write_records_no_history(ctx: Context) -> None:
    m = services.register_model(ctx, ModelCreate(name="a", evaluations=evals(0, 10)))
    bad = [EvaluationIn(question="h0", score=1.0, text="another text for the same key")]
    with pytest.raises(QuestionConflict):  # the transaction rolls back, history row included
        services.add_evaluations(ctx, m.id, bad)
    assert [r.reason for r in rows_of(ctx, m.id)] == ["register"]


def test_history_is_bounded_per_model_and_encoder(ctx: Context) -> None:
    a = services.register_model(ctx, ModelCreate(name="a", evaluations=evals(0, 10)))
    b = services.register_model(ctx, ModelCreate(name="b", evaluations=evals(0, 10, seed=2)))
    dim = ctx.embedder.embedding_dim
    for step in range(6):
        with ctx.session_factory() as s, s.begin():
            items = [(m, np.full(dim, float(step)), 10 + step) for m in (a.id, b.id)]
            record_embeddings(s, ctx.embedder.fingerprint, items, "reindex", keep=3)
        with ctx.session_factory() as s, s.begin():  # another encoder's rows are counted apart
            record_embeddings(s, "other-encoder", [(a.id, np.zeros(dim), 1)], "promote", keep=3)
    for m in (a.id, b.id):
        mine = [r for r in rows_of(ctx, m) if r.fingerprint == ctx.embedder.fingerprint]
        assert [r.n_evaluations for r in mine] == [13, 14, 15]  # the newest three
        assert all(abs((r.distance_prev or 0) - np.sqrt(dim)) < 1e-9 for r in mine)
    assert len([r for r in rows_of(ctx, a.id) if r.fingerprint == "other-encoder"]) == 3


def test_history_reads_newest_first_with_a_summary_in_readable_units(ctx: Context) -> None:
    m = services.register_model(ctx, ModelCreate(name="a", evaluations=evals(0, 16)))
    services.register_model(ctx, ModelCreate(name="b", evaluations=evals(0, 16, seed=5)))
    services.register_model(ctx, ModelCreate(name="c", evaluations=evals(0, 16, seed=6)))
    services.add_evaluations(ctx, m.id, evals(16, 32, seed=3))
    services.add_evaluations(ctx, m.id, evals(32, 48, seed=4))
    h = model_history(ctx, m.id)
    assert [e.reason for e in h.items] == ["evaluations", "evaluations", "register"]
    scale = neighbour_scale(ctx)
    assert scale is not None and h.neighbour_scale == scale
    _, vecs = ctx.index.scan_models(None)
    d = np.linalg.norm(vecs[:, None, :] - vecs[None, :, :], axis=-1) + np.diag([np.inf] * len(vecs))
    assert abs(scale - float(np.median(d.min(axis=1)))) < 1e-5  # median distance to the nearest other model
    top = h.items[0]
    assert top.distance_prev is not None and top.relative_prev is not None
    assert abs(top.relative_prev - top.distance_prev / scale) < 1e-9
    sm = h.summary
    assert sm.embeddings == 3 and sm.n_evaluations_first == 16 and sm.n_evaluations_last == 48
    assert sm.reasons == {"evaluations": 2} and sm.net_distance is not None and sm.path_length is not None
    assert sm.net_distance <= sm.path_length + 1e-9
    assert "new evaluations" in sm.why and "16 to 48 evaluations" in sm.why
    page = model_history(ctx, m.id, limit=1, offset=1)
    assert page.total == 3 and [e.reason for e in page.items] == ["evaluations"]


def test_history_endpoint(client: TestClient, writer: dict[str, str], reader: dict[str, str]) -> None:
    body = {
        "name": "api-model",
        "evaluations": [
            {"question": f"q{i}", "score": i % 2, "text": f"Endpoint question {i}?"} for i in range(8)
        ],
    }
    r = client.post("/v1/models", json=body, headers=writer)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    r = client.get(f"/v1/models/{mid}/history", headers=reader)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["total"] == 1 and got["items"][0]["reason"] == "register"
    assert got["items"][0]["distance_prev"] is None and got["summary"]["embeddings"] == 1
    assert "embedded once" in got["summary"]["why"]
    assert client.get(f"/v1/models/{uuid.uuid4()}/history", headers=reader).status_code == 404
    assert client.get(f"/v1/models/{mid}/history", params={"limit": 0}, headers=reader).status_code == 422
