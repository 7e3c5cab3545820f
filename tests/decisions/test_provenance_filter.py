"""Decisions restricted to one provenance use only its evaluations (SQLite and PostgreSQL).

Two imports (wide CSVs `a` and `b`, so two provenance records with tasks `a` and `b`) score the same
models on disjoint question sets. `twin-a` answers exactly like `target` on a's questions and the
opposite on b's; `twin-b` the reverse; `only-b` was scored on b only. Over all evaluations both twins
disagree with `target` on half the shared questions, so a decision that ignored the filter could not
tell them apart; restricted to one task, the matching twin is the one with no disagreement at all.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from registry import importers, services
from registry.decisions import service
from registry.decisions.schemas import (
    FingerprintRequest,
    PortfolioFilters,
    PortfolioRequest,
    ReferenceQueries,
    RouteRequest,
)
from registry.decisions.service.thresholds import ThresholdProvider
from registry.schemas import EvaluationFilter, EvaluationIn
from registry.services import Context
from registry.services.provenance import NoProvenanceEvaluations

N = 40  # questions per task
RNG = np.random.default_rng(7)
TARGET = {"a": RNG.integers(0, 2, N).astype(float), "b": RNG.integers(0, 2, N).astype(float)}
OTHER = {"a": RNG.integers(0, 2, N).astype(float), "b": RNG.integers(0, 2, N).astype(float)}
SCORES: dict[str, dict[str, np.ndarray]] = {  # task -> model -> scores on that task's questions
    "a": {"target": TARGET["a"], "twin-a": TARGET["a"], "twin-b": 1 - TARGET["a"], "other": OTHER["a"]},
    "b": {
        "target": TARGET["b"],
        "twin-a": 1 - TARGET["b"],
        "twin-b": TARGET["b"],
        "only-b": TARGET["b"],
        "other": OTHER["b"],
    },
}
ONLY_A = EvaluationFilter(tasks=["a"])
ONLY_B = EvaluationFilter(tasks=["b"])


def _text(task: str, j: int) -> str:
    return f"Task {task}, item {j}: what is {j} plus {j * 7 + (3 if task == 'a' else 5)}?"


def _write(path: Path, task: str) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", *[_text(task, j) for j in range(N)]])
        for model, ys in SCORES[task].items():
            w.writerow([model, *[int(y) for y in ys]])
    return path


@pytest.fixture
def models(ctx: Context, tmp_path: Path) -> dict[str, uuid.UUID]:
    for task in ("a", "b"):
        services.import_batch(ctx, importers.read(_write(tmp_path / f"{task}.csv", task), "wide-csv"))
    page = services.list_models(ctx, None, limit=100)
    return {m.name: m.id for m in page.items}


def _submitted() -> list[EvaluationIn]:
    return [
        EvaluationIn(question=importers.text_key(_text(t, j)), score=float(TARGET[t][j]))
        for t in ("a", "b")
        for j in range(N)
    ]


def test_similar_uses_only_the_provenance_scores(ctx: Context, models: dict[str, uuid.UUID]) -> None:
    target = models["target"]
    every = {it.model.name: it for it in services.similar_models(ctx, target, k=4).items}
    assert every["twin-a"].observed_disagreement == pytest.approx(0.5)
    assert every["twin-b"].observed_disagreement == pytest.approx(0.5)
    assert every["twin-a"].shared_questions == 2 * N

    for flt, twin, opposite in ((ONLY_A, "twin-a", "twin-b"), (ONLY_B, "twin-b", "twin-a")):
        got = services.similar_models(ctx, target, k=4, provenance=flt)
        by_name = {it.model.name: it for it in got.items}
        assert got.items[0].model.name in (twin, "only-b")  # only-b matches target on b's questions
        assert by_name[twin].observed_disagreement == 0.0 and by_name[twin].shared_questions == N
        assert by_name[opposite].observed_disagreement == 1.0 and by_name[opposite].shared_questions == N
        assert got.provenance is not None and got.provenance.filter == flt
        assert got.provenance.embedding == "recomputed"
    restricted = services.similar_models(ctx, target, k=4, provenance=ONLY_A)
    assert "only-b" not in {it.model.name for it in restricted.items}  # no evaluation of task a
    assert restricted.provenance is not None
    assert (restricted.provenance.models, restricted.provenance.left_out) == (4, 1)
    assert restricted.provenance.evaluations == 4 * N


def test_restricted_distances_use_vectors_embedded_from_that_provenance(
    ctx: Context, models: dict[str, uuid.UUID]
) -> None:
    target, twin = models["target"], models["twin-a"]
    got = services.similar_models(ctx, target, k=4, rank_by="embedding", provenance=ONLY_A)
    a = np.asarray(services.embed_model_with_provenance(ctx, target, ONLY_A).vector)
    b = np.asarray(services.embed_model_with_provenance(ctx, twin, ONLY_A).vector)
    item = next(it for it in got.items if it.model.id == twin)
    assert item.distance == pytest.approx(float(np.linalg.norm(a - b)), abs=1e-5)
    # identical scores on identical questions: the same vector, which the stored vectors are not
    assert item.distance == pytest.approx(0.0, abs=1e-5)
    stored = {
        it.model.id: it.distance
        for it in services.similar_models(ctx, target, k=4, rank_by="embedding").items
    }
    assert stored[twin] > 1e-3


def test_compare_and_fingerprint_read_shared_scores_of_the_provenance(
    ctx: Context, models: dict[str, uuid.UUID]
) -> None:
    target, twin_a = models["target"], models["twin-a"]
    assert service.compare(ctx, target, twin_a).observed_disagreement == pytest.approx(0.5)
    on_a = service.compare(ctx, target, twin_a, provenance=ONLY_A)
    on_b = service.compare(ctx, target, twin_a, provenance=ONLY_B)
    assert (on_a.shared_questions, on_a.observed_disagreement) == (N, 0.0)
    assert (on_b.shared_questions, on_b.observed_disagreement) == (N, 1.0)
    assert on_a.distance == pytest.approx(0.0, abs=1e-5) and on_a.provenance is not None
    with pytest.raises(NoProvenanceEvaluations, match=str(models["only-b"])):
        service.compare(ctx, target, models["only-b"], provenance=ONLY_A)

    thresholds = ThresholdProvider()
    every = service.fingerprint(ctx, FingerprintRequest(evaluations=_submitted(), k=5), thresholds)
    disagree = {m.model.name: m.score_disagreement for m in every.matches}
    assert disagree["twin-a"] == pytest.approx(0.5) and disagree["twin-b"] == pytest.approx(0.5)
    only_a = service.fingerprint(
        ctx, FingerprintRequest(evaluations=_submitted(), k=5, provenance=ONLY_A), thresholds
    )
    by_name = {m.model.name: m for m in only_a.matches}
    assert "only-b" not in by_name
    assert by_name["target"].shared_questions == N and by_name["twin-a"].score_disagreement == 0.0
    assert by_name["twin-b"].score_disagreement == 1.0
    assert only_a.provenance is not None and only_a.provenance.unrestricted  # thresholds: whole registry


def test_pool_decisions_leave_out_models_without_the_provenance(
    ctx: Context, models: dict[str, uuid.UUID]
) -> None:
    ref = ReferenceQueries(texts=["What is 3 plus 4?", "Name a prime number."])
    filters = PortfolioFilters(status=[])
    every = service.portfolio(ctx, PortfolioRequest(k=2, filters=filters, reference=ref))
    only_a = service.portfolio(ctx, PortfolioRequest(k=2, filters=filters, reference=ref, provenance=ONLY_A))
    assert every.pool_size == 5 and only_a.pool_size == 4
    assert only_a.provenance is not None and only_a.provenance.left_out == 1
    assert all(b.n_evaluations == N for b in only_a.chosen)  # briefs describe the re-embedded vectors
    assert all(b.n_evaluations == 2 * N for b in every.chosen if b.name != "only-b")

    routed = service.route_queries(ctx, RouteRequest(queries=["What is 2 plus 2?"], provenance=ONLY_A))
    assert routed.candidates == 4 and models["only-b"] not in {r.model.id for r in routed.routes[0].ranked}
    with pytest.raises(NoProvenanceEvaluations, match=str(models["only-b"])):
        service.route_queries(
            ctx,
            RouteRequest(queries=["x?"], candidates=[models["target"], models["only-b"]], provenance=ONLY_A),
        )

    fb = service.fallbacks(ctx, models["target"], k=3, provenance=ONLY_A)
    assert fb.items[0].model.name == "twin-a" and fb.items[0].distance == pytest.approx(0.0, abs=1e-5)
    assert models["only-b"] not in {i.model.id for i in fb.items}
    fb_b = service.fallbacks(ctx, models["target"], k=3, provenance=ONLY_B)
    assert {fb_b.items[0].model.name, fb_b.items[1].model.name} == {"twin-b", "only-b"}


def test_duplicates_on_one_provenance(ctx: Context, models: dict[str, uuid.UUID]) -> None:
    thresholds = ThresholdProvider()
    only_a = service.duplicates(ctx, thresholds, provenance=ONLY_A)
    assert only_a.provenance is not None and only_a.provenance.models == 4
    pairs = {frozenset((p.a.name, p.b.name)): p for p in only_a.pairs}
    for pair in pairs.values():
        assert "only-b" not in (pair.a.name, pair.b.name)
        assert pair.shared_questions == N  # only task a's questions were compared
    every = service.duplicates(ctx, thresholds)
    for pair in every.pairs:
        assert pair.shared_questions in (N, 2 * N)


def test_an_empty_filter_changes_nothing(ctx: Context, models: dict[str, uuid.UUID]) -> None:
    target = models["target"]
    plain = services.similar_models(ctx, target, k=3)
    empty = services.similar_models(ctx, target, k=3, provenance=EvaluationFilter())
    assert empty == plain and empty.provenance is None


def test_api_restricts_decisions_by_provenance(
    client: TestClient, reader: dict[str, str], models: dict[str, uuid.UUID]
) -> None:
    target, twin_a = str(models["target"]), str(models["twin-a"])
    r = client.get(f"/v1/models/{target}/similar", params={"task": "a", "k": 3}, headers=reader)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["items"][0]["model"]["name"] == "twin-a" and body["items"][0]["observed_disagreement"] == 0
    assert body["provenance"]["filter"]["tasks"] == ["a"] and body["provenance"]["left_out"] == 1

    r = client.get("/v1/compare", params={"a": target, "b": twin_a, "task": "b"}, headers=reader)
    assert r.status_code == 200, r.text
    assert r.json()["observed_disagreement"] == 1.0 and r.json()["shared_questions"] == N

    r = client.get(f"/v1/models/{target}/fallbacks", params={"task": "a", "k": 2}, headers=reader)
    assert r.status_code == 200 and r.json()["items"][0]["model"]["name"] == "twin-a"

    sub = [e.model_dump() for e in _submitted()]
    r = client.post(
        "/v1/fingerprint", json={"evaluations": sub, "provenance": {"tasks": ["b"]}}, headers=reader
    )
    assert r.status_code == 200, r.text
    scores = {m["model"]["name"]: m["score_disagreement"] for m in r.json()["matches"]}
    assert scores["twin-b"] == 0.0 and scores["twin-a"] == 1.0

    r = client.post("/v1/portfolios", json={"k": 2, "provenance": {"tasks": ["a"]}}, headers=reader)
    assert r.status_code == 200 and r.json()["pool_size"] == 4

    r = client.get(f"/v1/models/{models['only-b']}/similar", params={"task": "a"}, headers=reader)
    assert r.status_code == 422 and "no evaluations of this provenance" in r.json()["detail"]
    r = client.post("/v1/route", json={"queries": ["q?"], "provenance": {"tools": ["nope"]}}, headers=reader)
    assert r.status_code == 422 and "no model has evaluations of this provenance" in r.json()["detail"]


def test_cached_vectors_equal_a_fresh_embedding_and_follow_writes(
    ctx: Context, models: dict[str, uuid.UUID], tmp_path: Path
) -> None:
    from registry.services.provenance import provenance_vectors

    first = provenance_vectors(ctx, ONLY_A)
    again = provenance_vectors(ctx, ONLY_A)  # from the cache
    fresh = provenance_vectors(ctx, ONLY_A, cached=False)
    assert first.ids == again.ids == fresh.ids
    np.testing.assert_array_equal(again.vectors, fresh.vectors)
    assert again.counts == fresh.counts

    # a new import of task a (a new provenance record, same questions) changes twin-b's scores there:
    # the restricted vector must follow at once
    SCORES["a"]["twin-b"] = TARGET["a"].copy()
    try:
        services.import_batch(ctx, importers.read(_write(tmp_path / "a.csv", "a"), "wide-csv"))
    finally:
        SCORES["a"]["twin-b"] = 1 - TARGET["a"]
    after = provenance_vectors(ctx, ONLY_A)
    refreshed = provenance_vectors(ctx, ONLY_A, cached=False)
    np.testing.assert_array_equal(after.vectors, refreshed.vectors)
    twin_b = models["twin-b"]
    assert not np.allclose(after.vector(twin_b), first.vector(twin_b))
    assert np.allclose(after.vector(twin_b), after.vector(models["target"]), atol=1e-5)
