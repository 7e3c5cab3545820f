"""GET /v1/probes, provisional embeddings and the fingerprint decision over HTTP."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.decisions.test_fingerprint_api import N_Q, PATTERNS, evals, registered

__all__ = ["registered"]


def test_probe_set_is_deterministic_versioned_and_discriminating(
    client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    r = client.get("/v1/probes", params={"n": 16}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n"] == 16 and body["models"] == len(PATTERNS) and len(body["questions"]) == 16
    again = client.get("/v1/probes", params={"n": 16}, headers=reader).json()
    assert again == body  # same registry state, same set and version
    keys = [q["key"] for q in body["questions"]]
    assert len(set(keys)) == 16 and all(k.startswith("m") for k in keys)
    infos = [q["information"] for q in body["questions"]]
    assert infos == sorted(infos, reverse=True) and infos[0] > 0
    assert all(
        0 < q["p_correct"] < 1 for q in body["questions"]
    )  # questions everyone answers alike say nothing
    assert client.get("/v1/probes", params={"n": 0}, headers=reader).status_code == 422


def test_provisional_embeddings_are_marked(
    client: TestClient, writer: dict[str, str], reader: dict[str, str], registered: dict[str, str]
) -> None:
    r = client.post(
        "/v1/models",
        json={"name": "thin", "evaluations": evals(PATTERNS["target"], range(4))},
        headers=writer,
    )
    assert r.status_code == 201, r.text
    emb = r.json()["embedding"]
    assert emb["provisional"] is True and emb["n_evaluations"] == 4 and "124 more" in emb["settle_with"]
    fb = client.get(f"/v1/models/{registered['target']}/fallbacks", headers=reader)
    assert fb.status_code == 200, fb.text
    briefs = {f["model"]["name"]: f["model"] for f in fb.json()["items"]}
    assert all(b["provisional"] == (b["n_evaluations"] < 128) for b in briefs.values())


def test_thin_evidence_is_undetermined_with_what_would_decide(
    client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    # 12 of the target's own answers: identical, but far too few to state `same` with a bound
    r = client.post(
        "/v1/fingerprint",
        json={"evaluations": evals(PATTERNS["target"], range(12)), "min_shared": 8},
        headers=reader,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"]["verdict"] == "undetermined"
    assert body["decision"]["questions_needed"] > 12
    assert body["decision"]["probe_questions"]  # probe questions the candidate has and we did not send
    assert all(m["verdict"] != "same" for m in body["matches"])
    assert body["tolerance"]["alpha"] == 0.05


def test_no_same_for_an_unregistered_distinct_model(
    client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    rng = np.random.default_rng(11)
    stranger = (rng.random(N_Q) < 0.5).astype(float).tolist()
    r = client.post("/v1/fingerprint", json={"evaluations": evals(stranger), "k": 5}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert all(m["verdict"] != "same" for m in body["matches"])
    assert body["decision"]["verdict"] in {"different", "related", "undetermined"}
    top = body["matches"][0]
    assert top["verdict_basis"] == "matched" and top["evidence"]["shared_questions"] == N_Q
    assert top["why"]


def test_similar_reports_shared_question_evidence(
    client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    r = client.get(f"/v1/models/{registered['target']}/similar", params={"k": 3}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ranked_by"] == "behaviour" and body["reference_questions"] == N_Q
    items = body["items"]
    assert all(it["shared_questions"] == N_Q for it in items)
    assert all(0.0 <= it["profile_distance"] <= 1.0 for it in items)
    beh = [it["behaviour_distance"] for it in items]
    assert beh == sorted(beh)
    # the complement disagrees everywhere: never ranked before an independent model
    names = [it["model"]["name"] for it in items]
    assert "opposite" not in names[:1]
    emb = client.get(
        f"/v1/models/{registered['target']}/similar", params={"k": 3, "rank_by": "embedding"}, headers=reader
    ).json()
    assert emb["ranked_by"] == "embedding" and all(it["behaviour_distance"] is None for it in emb["items"])


def test_tolerance_follows_new_scores_when_the_model_count_does_not_change(
    client: TestClient, reader: dict[str, str], writer: dict[str, str], registered: dict[str, str]
) -> None:
    """Caches of data-derived thresholds key on the scores, not the model count: every process agrees."""
    probe = {"evaluations": evals(PATTERNS["target"]), "k": 2}
    before = client.post("/v1/fingerprint", json=probe, headers=reader).json()["tolerance"]
    new = [
        {"question": f"extra{i}", "text": f"Extra question {i}?", "score": float(i % 2)} for i in range(200)
    ]
    for name in ("target", "other-0"):  # two models now agree on 200 more questions
        r = client.post(
            f"/v1/models/{registered[name]}/evaluations", json={"evaluations": new}, headers=writer
        )
        assert r.status_code == 200, r.text
    after = client.post("/v1/fingerprint", json=probe, headers=reader).json()["tolerance"]
    assert after["distinct_floor"] < before["distinct_floor"]
