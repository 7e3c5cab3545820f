"""Decision endpoints over HTTP on SQLite and PostgreSQL, with the real (small) encoder and local Qdrant."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from encoder.inference import LocusEmbedder

QUESTIONS = [
    {"key": f"q{i}", "text": f"Question {i}: what is {i} times {i + 3}?", "category": f"c{i % 3}"}
    for i in range(24)
]
PATTERNS = {  # score patterns over the 24 questions: two near-identical pairs and two loners
    "alpha": [1.0 if i % 2 == 0 else 0.0 for i in range(24)],
    "alpha-2": [1.0 if i % 2 == 0 or i == 23 else 0.0 for i in range(24)],
    "beta": [1.0 if i % 3 else 0.0 for i in range(24)],
    "gamma": [1.0 if i < 12 else 0.0 for i in range(24)],
    "delta": [0.0 if i < 12 else 1.0 for i in range(24)],
}
META: dict[str, dict[str, Any]] = {
    "alpha": {
        "params_b": 70,
        "input_price": 3.0,
        "output_price": 9.0,
        "license": "closed",
        "context_window": 128000,
    },
    "alpha-2": {
        "params_b": 8,
        "input_price": 0.2,
        "output_price": 0.6,
        "license": "apache-2.0",
        "context_window": 8192,
    },
    "beta": {
        "params_b": 13,
        "input_price": 0.5,
        "output_price": 1.5,
        "license": "apache-2.0",
        "context_window": 32768,
    },
    "gamma": {
        "params_b": 7,
        "input_price": 0.1,
        "output_price": 0.3,
        "license": "apache-2.0",
        "context_window": 32768,
    },
    "delta": {
        "params_b": 400,
        "input_price": 10.0,
        "output_price": 30.0,
        "license": "closed",
        "context_window": 200000,
    },
}


def evals(pattern: list[float]) -> list[dict[str, Any]]:
    return [{"question": q["key"], "score": s} for q, s in zip(QUESTIONS, pattern, strict=True)]


@pytest.fixture
def models(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    r = client.post("/v1/questions", json={"questions": QUESTIONS}, headers=writer)
    assert r.status_code == 201, r.text
    out = {}
    for name, pattern in PATTERNS.items():
        r = client.post(
            "/v1/models", json={"name": name, **META[name], "evaluations": evals(pattern)}, headers=writer
        )
        assert r.status_code == 201, r.text
        out[name] = r.json()["id"]
    return out


def assert_error(r: Any, status: int, error: str, *needles: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error, body
    for n in needles:
        assert n in body["detail"], body


def test_portfolio_covers_the_pool(
    client: TestClient, reader: dict[str, str], models: dict[str, str]
) -> None:
    for method in ("k-center", "k-medoids", "coverage-greedy"):
        r = client.post("/v1/portfolios", json={"method": method, "k": 3}, headers=reader)
        assert r.status_code == 200, r.text
        body = r.json()
        chosen = {m["id"] for m in body["chosen"]}
        assert len(chosen) == 3 and body["pool_size"] == 5
        assert {c["model"]["id"] for c in body["left_out"]} == set(models.values()) - chosen
        assert all(c["representative"]["id"] in chosen for c in body["left_out"])
        assert body["coverage_radius"] == pytest.approx(max(c["distance"] for c in body["left_out"]))
        assert body["reference_queries"] == 24
        assert body["predicted_accuracy"] <= body["predicted_accuracy_full_pool"] + 1e-9


def test_portfolio_is_chosen_in_the_predictors_space(
    client: TestClient, reader: dict[str, str], models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Portfolios spread their picks where the predictor reads (`Embedder.predictor_space`: the stored
    vectors with the stored-vector metric undone), not in the stored vectors' metric: with that space
    stretched tenfold the picks stay and every distance the answer reports is ten times larger."""
    body = {"method": "k-center", "k": 2}
    before = client.post("/v1/portfolios", json=body, headers=reader).json()
    real = LocusEmbedder.predictor_space
    calls: list[int] = []

    def stretched(self: LocusEmbedder, vectors: np.ndarray) -> np.ndarray:
        calls.append(len(vectors))
        return 10.0 * real(self, vectors)

    monkeypatch.setattr(LocusEmbedder, "predictor_space", stretched)
    after = client.post("/v1/portfolios", json=body, headers=reader).json()
    assert calls == [5]
    assert [m["id"] for m in after["chosen"]] == [m["id"] for m in before["chosen"]]
    assert after["coverage_radius"] == pytest.approx(10.0 * before["coverage_radius"], rel=1e-6)


def test_portfolio_budget_include_exclude(
    client: TestClient, reader: dict[str, str], models: dict[str, str]
) -> None:
    r = client.post("/v1/portfolios", json={"method": "coverage-greedy", "param_budget": 30}, headers=reader)
    assert r.status_code == 200, r.text
    assert r.json()["total_params_b"] <= 30
    r = client.post(
        "/v1/portfolios",
        json={"k": 2, "include": [models["delta"]], "exclude": [models["gamma"]]},
        headers=reader,
    )
    names = {m["name"] for m in r.json()["chosen"]}
    assert "delta" in names and "gamma" not in names


def test_portfolio_bad_input(client: TestClient, reader: dict[str, str], models: dict[str, str]) -> None:
    assert_error(
        client.post("/v1/portfolios", json={"k": 9}, headers=reader), 422, "PortfolioSizeError", "k=9"
    )
    assert_error(
        client.post("/v1/portfolios", json={"param_budget": 1}, headers=reader),
        422,
        "BudgetError",
        "lightest weighs 7",
    )
    ghost = str(uuid.uuid4())
    assert_error(
        client.post("/v1/portfolios", json={"k": 2, "include": [ghost]}, headers=reader),
        404,
        "UnknownModelError",
        ghost,
    )
    assert_error(
        client.post("/v1/portfolios", json={"k": 1, "filters": {"provider": ["nobody"]}}, headers=reader),
        422,
        "EmptyCandidatesError",
    )


def test_fallbacks_follow_status_at_once(
    client: TestClient, reader: dict[str, str], writer: dict[str, str], models: dict[str, str]
) -> None:
    url = f"/v1/models/{models['alpha']}/fallbacks"
    first = client.get(url, params={"k": 4}, headers=reader).json()
    names = [f["model"]["name"] for f in first["items"]]
    assert len(names) == 4 and "alpha" not in names
    assert names[0] == "alpha-2"  # one flipped answer away
    assert all(0.0 <= f["predicted_agreement"] <= 1.0 for f in first["items"])
    r = client.patch(f"/v1/models/{models['alpha-2']}", json={"status": "unavailable"}, headers=writer)
    assert r.status_code == 200, r.text
    after = [f["model"]["name"] for f in client.get(url, params={"k": 4}, headers=reader).json()["items"]]
    assert "alpha-2" not in after and after == names[1:]
    # hard constraints: context window and license class
    big = client.get(url, params={"k": 4, "min_context_window": 100000}, headers=reader).json()
    assert [f["model"]["name"] for f in big["items"]] == ["delta"]
    same = client.get(url, params={"k": 4, "same_license": True}, headers=reader).json()
    assert [f["model"]["name"] for f in same["items"]] == ["delta"]


def test_fallbacks_bad_input(
    client: TestClient, reader: dict[str, str], writer: dict[str, str], models: dict[str, str]
) -> None:
    ghost = str(uuid.uuid4())
    assert_error(client.get(f"/v1/models/{ghost}/fallbacks", headers=reader), 404, "UnknownModelError", ghost)
    bare = client.post("/v1/models", json={"name": "bare"}, headers=writer).json()["id"]
    assert_error(client.get(f"/v1/models/{bare}/fallbacks", headers=reader), 409, "NotEmbeddedError", bare)


def test_route_ranks_and_falls_back(
    client: TestClient, reader: dict[str, str], writer: dict[str, str], models: dict[str, str]
) -> None:
    queries = ["What is 3 times 6?", "Explain photosynthesis."]
    r = client.post("/v1/route", json={"queries": queries, "top_k": 5}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["candidates"] == 5 and len(body["routes"]) == 2
    for q in body["routes"]:
        ps = [c["score"] for c in q["ranked"]]
        assert ps == sorted(ps, reverse=True) and len(ps) == 5
        assert q["chosen"]["id"] == q["ranked"][0]["model"]["id"] == q["preferred"]["id"]
    best = body["routes"][0]["chosen"]["id"]
    client.patch(f"/v1/models/{best}", json={"status": "unavailable"}, headers=writer)
    again = client.post("/v1/route", json={"queries": queries, "top_k": 5}, headers=reader).json()["routes"][
        0
    ]
    assert again["preferred"]["id"] == best and again["chosen"]["id"] != best
    assert again["fallbacks"] and best not in {f["model"]["id"] for f in again["fallbacks"]}
    # a large cost weight moves the choice to the cheapest model
    cheap = client.post("/v1/route", json={"queries": queries, "cost_weight": 100.0}, headers=reader).json()
    assert cheap["routes"][0]["chosen"]["name"] == "gamma"
    sub = client.post(
        "/v1/route",
        json={"queries": queries, "candidates": [models["beta"], models["delta"]]},
        headers=reader,
    ).json()
    assert {c["model"]["name"] for c in sub["routes"][0]["ranked"]} == {"beta", "delta"}
    port = client.post("/v1/route", json={"queries": queries, "portfolio": {"k": 2}}, headers=reader).json()
    assert port["candidates"] == 2


def test_route_bad_input(client: TestClient, reader: dict[str, str], models: dict[str, str]) -> None:
    assert_error(
        client.post("/v1/route", json={"queries": ["ok", "  "]}, headers=reader),
        422,
        "EmptyQueryError",
        "queries[1]",
    )
    assert_error(
        client.post("/v1/route", json={"queries": ["ok"], "candidates": []}, headers=reader),
        422,
        "EmptyCandidatesError",
    )
    ghost = str(uuid.uuid4())
    assert_error(
        client.post("/v1/route", json={"queries": ["ok"], "candidates": [ghost]}, headers=reader),
        404,
        "UnknownModelError",
        ghost,
    )
    assert client.post("/v1/route", json={"queries": []}, headers=reader).status_code == 422


def test_fingerprint_duplicates_and_compare(
    client: TestClient, reader: dict[str, str], writer: dict[str, str], models: dict[str, str]
) -> None:
    r = client.post("/v1/fingerprint", json={"evaluations": evals(PATTERNS["gamma"]), "k": 3}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"][0]["model"]["name"] == "gamma"
    assert body["matches"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    assert body["matches"][0]["verdict"] == "same"
    th = body["thresholds"]
    assert th["source"].startswith("calibrated from the registry") and 0 < th["same"] <= th["related"]
    assert {m["verdict"] for m in body["matches"][1:]} <= {"related", "different"}
    # the same model registered twice under two names is a duplicate
    client.post(
        "/v1/models", json={"name": "gamma-mirror", "evaluations": evals(PATTERNS["gamma"])}, headers=writer
    )
    dup = client.get("/v1/duplicates", headers=reader).json()
    pairs = [{p["a"]["name"], p["b"]["name"]} for p in dup["pairs"]]
    assert {"gamma", "gamma-mirror"} in pairs
    cmp = client.get(
        "/v1/compare", params={"a": models["gamma"], "b": models["delta"]}, headers=reader
    ).json()
    assert cmp["distance"] > 0 and cmp["reference_queries"] == 24
    assert [c["category"] for c in cmp["categories"]] == ["c0", "c1", "c2"]
    assert all(c["queries"] == 8 for c in cmp["categories"])
    assert 0.0 <= cmp["predicted_agreement"] <= 1.0
    ghost = str(uuid.uuid4())
    assert_error(
        client.get("/v1/compare", params={"a": models["gamma"], "b": ghost}, headers=reader),
        404,
        "UnknownModelError",
        ghost,
    )
    assert_error(
        client.post(
            "/v1/fingerprint", json={"evaluations": [{"question": "nope", "score": 1}]}, headers=reader
        ),
        422,
        "UnknownQuestions",
        "nope",
    )
