"""POST /v1/fingerprint and GET /v1/duplicates on matched questions, over HTTP with the real small encoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

N_Q = 96
QUESTIONS = [
    {"key": f"m{i}", "text": f"Matched question {i}: name the {i}th prime after {3 * i}.", "category": "c"}
    for i in range(N_Q)
]
_rng = np.random.default_rng(7)
_base = (_rng.random(N_Q) < 0.5).astype(float)
PATTERNS = {  # the model to find, its complement (a clearly different model) and three independent ones
    "target": _base.tolist(),
    "opposite": (1.0 - _base).tolist(),
    **{f"other-{i}": (_rng.random(N_Q) < 0.5).astype(float).tolist() for i in range(3)},
}


def evals(pattern: list[float], keys: range | list[int] = range(N_Q)) -> list[dict[str, Any]]:
    return [{"question": QUESTIONS[i]["key"], "score": pattern[i]} for i in keys]


@pytest.fixture
def registered(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    r = client.post("/v1/questions", json={"questions": QUESTIONS}, headers=writer)
    assert r.status_code == 201, r.text
    out = {}
    for name, pattern in PATTERNS.items():
        r = client.post("/v1/models", json={"name": name, "evaluations": evals(pattern)}, headers=writer)
        assert r.status_code == 201, r.text
        out[name] = r.json()["id"]
    return out


def test_a_subset_of_its_own_evaluations_finds_the_model(
    client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    subset = [int(i) for i in np.sort(np.random.default_rng(1).choice(N_Q, 48, replace=False))]
    r = client.post(
        "/v1/fingerprint", json={"evaluations": evals(PATTERNS["target"], subset), "k": 5}, headers=reader
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["min_shared"] == 1 and body["candidates"] == 5
    mt = body["matched_thresholds"]
    assert mt is not None and mt["source"].startswith("calibrated from the registry") and mt["same"] > 0
    by_name = {m["model"]["name"]: m for m in body["matches"]}
    top = body["matches"][0]
    assert top["model"]["id"] == registered["target"]
    assert top["verdict"] == "same" and top["verdict_basis"] == "matched"
    assert top["shared_questions"] == 48 and top["matched_distance"] == pytest.approx(0.0, abs=1e-6)
    assert top["score_disagreement"] == 0.0
    # the global distance compares 48 questions with 96: not zero, which is why matching is needed
    assert top["distance"] > 0
    opposite = by_name["opposite"]
    assert opposite["verdict"] != "same" and opposite["verdict_basis"] == "matched"
    assert opposite["matched_distance"] > mt["same"] and opposite["score_disagreement"] == 1.0


def test_too_few_shared_questions_fall_back_to_the_global_distance(
    client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    r = client.post(
        "/v1/fingerprint",
        json={"evaluations": evals(PATTERNS["target"], range(20)), "k": 5, "min_shared": 32},
        headers=reader,
    )
    assert r.status_code == 200, r.text
    for m in r.json()["matches"]:
        assert m["verdict_basis"] == "global" and m["matched_distance"] is None
        assert m["shared_questions"] == 20
    r = client.post(
        "/v1/fingerprint", json={"evaluations": evals(PATTERNS["target"]), "min_shared": 0}, headers=reader
    )
    assert r.status_code == 422


def test_duplicates_use_shared_questions(
    client: TestClient, reader: dict[str, str], writer: dict[str, str], registered: dict[str, str]
) -> None:
    # the same model registered again under another name, evaluated on 64 of the 96 questions
    r = client.post(
        "/v1/models",
        json={"name": "target-mirror", "evaluations": evals(PATTERNS["target"], range(16, 80))},
        headers=writer,
    )
    assert r.status_code == 201, r.text
    dup = client.get("/v1/duplicates", headers=reader)
    assert dup.status_code == 200, dup.text
    body = dup.json()
    found = {frozenset((p["a"]["name"], p["b"]["name"])): p for p in body["pairs"]}
    pair = found[frozenset(("target", "target-mirror"))]
    assert pair["verdict_basis"] == "matched" and pair["shared_questions"] == 64
    assert pair["matched_distance"] == pytest.approx(0.0, abs=1e-6) and pair["score_disagreement"] == 0.0
    assert frozenset(("target", "opposite")) not in found
    assert body["pairs_compared"] >= 1 and body["matched_thresholds"] is not None
