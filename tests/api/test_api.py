"""HTTP behaviour: happy paths, auth, and every bad-input class giving a 4xx that names the item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from registry import services
from registry.ports import ModelPoint
from registry.schemas import QuestionIn
from registry.services import Context
from tests.api.conftest import make_container

QUESTIONS = [
    {"key": f"q{i}", "text": f"Question number {i}: explain topic {i % 5} briefly.", "category": f"c{i % 3}"}
    for i in range(16)
]


def scores(seed: int, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    keys = keys or [q["key"] for q in QUESTIONS]
    return [{"question": k, "score": ((i * 7 + seed * 3) % 10) / 10} for i, k in enumerate(keys)]


def seed(client: TestClient, writer: dict[str, str]) -> None:
    r = client.post("/v1/questions", json={"questions": QUESTIONS}, headers=writer)
    assert r.status_code == 201, r.text


def register(client: TestClient, writer: dict[str, str], name: str, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/models", json={"name": name, **fields}, headers=writer)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def n_models(client: TestClient, reader: dict[str, str]) -> int:
    total: int = client.get("/v1/models", headers=reader).json()["total"]
    return total


def assert_error(r: Any, status: int, error: str, *needles: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["error"] == error, body
    for n in needles:
        assert n in body["detail"], body


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": True, "index": True, "encoder": True, "cache_warmup": True}
    assert r.json()["cache_warmup"]["enabled"] is False
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/questions", "/v1/models", "/v1/models/{model_id}/similar", "/v1/keys"} <= set(paths)


def test_model_lifecycle(client: TestClient, writer: dict[str, str], reader: dict[str, str]) -> None:
    seed(client, writer)
    listed = client.get("/v1/questions", params={"category": "c0", "limit": 3}, headers=reader).json()
    assert listed["total"] == 6 and len(listed["items"]) == 3
    a = register(client, writer, "alpha", provider="acme", params_b=7, tags=["chat"], evaluations=scores(1))
    assert a["embedding"]["n_evaluations"] == 16 and len(a["embedding"]["vector"]) == 16
    b = register(client, writer, "beta", provider="acme", params_b=70, evaluations=scores(2))
    c = register(client, writer, "gamma", provider="other", evaluations=scores(3)[:8])
    register(client, writer, "no-evals")

    r = client.get("/v1/models", params={"provider": "acme", "min_params": 10}, headers=reader)
    assert [m["name"] for m in r.json()["items"]] == ["beta"]
    got = client.get(f"/v1/models/{a['id']}", params={"include_vector": True}, headers=reader).json()
    assert got["embedding"]["vector"] == a["embedding"]["vector"]

    sim = client.get(f"/v1/models/{a['id']}/similar", params={"k": 5}, headers=reader).json()
    assert {s["model"]["name"] for s in sim["items"]} == {"beta", "gamma"}
    beh = [s["behaviour_distance"] for s in sim["items"]]  # ranked by behaviour (profile + shared scores)
    assert beh == sorted(beh) and all(s["distance"] > 0 for s in sim["items"])
    emb = client.get(
        f"/v1/models/{a['id']}/similar", params={"k": 5, "rank_by": "embedding"}, headers=reader
    ).json()
    dists = [s["distance"] for s in emb["items"]]
    assert dists == sorted(dists) and all(d > 0 for d in dists)
    only_other = client.get(f"/v1/models/{a['id']}/similar", params={"provider": "other"}, headers=reader)
    assert [s["model"]["id"] for s in only_other.json()["items"]] == [c["id"]]

    r = client.patch(f"/v1/models/{b['id']}", json={"status": "unavailable"}, headers=writer)
    assert r.status_code == 200 and r.json()["status"] == "unavailable"
    active = client.get(f"/v1/models/{a['id']}/similar", params={"status": "active"}, headers=reader).json()
    assert [s["model"]["name"] for s in active["items"]] == ["gamma"]

    r = client.post(f"/v1/models/{c['id']}/evaluations", json={"evaluations": scores(3)[8:]}, headers=writer)
    assert r.status_code == 200 and r.json()["embedding"]["n_evaluations"] == 16
    ev = client.get(f"/v1/models/{c['id']}/evaluations", params={"limit": 4}, headers=reader).json()
    assert ev["total"] == 16 and len(ev["items"]) == 4

    assert client.delete(f"/v1/models/{b['id']}", headers=writer).status_code == 204
    assert_error(client.get(f"/v1/models/{b['id']}", headers=reader), 404, "NotFound", b["id"])
    assert n_models(client, reader) == 3


def test_same_evaluations_in_any_order_same_embedding(client: TestClient, writer: dict[str, str]) -> None:
    seed(client, writer)
    a = register(client, writer, "a", evaluations=scores(4))
    b = register(client, writer, "b", evaluations=list(reversed(scores(4))))
    assert a["embedding"]["vector"] == b["embedding"]["vector"]


def test_auth(ctx: Context, client: TestClient, admin: dict[str, str], reader: dict[str, str]) -> None:
    assert_error(client.get("/v1/models"), 401, "Unauthenticated", "Authorization")
    assert client.get("/v1/models").headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401, "Unauthenticated")
    assert_error(client.post("/v1/models", json={"name": "x"}, headers=reader), 403, "Forbidden", "write")
    assert_error(client.get("/v1/keys", headers=reader), 403, "Forbidden", "admin")
    r = client.post("/v1/keys", json={"name": "ci", "scopes": ["write"]}, headers=admin)
    assert r.status_code == 201
    new = r.json()
    assert (
        client.post(
            "/v1/models", json={"name": "x"}, headers={"Authorization": f"Bearer {new['key']}"}
        ).status_code
        == 201
    )
    assert client.delete(f"/v1/keys/{new['id']}", headers=admin).json()["revoked_at"] is not None
    assert_error(
        client.get("/v1/models", headers={"Authorization": f"Bearer {new['key']}"}), 401, "Unauthenticated"
    )
    assert "key" not in client.get("/v1/keys", headers=admin).json()[0]
    # Open reads: GET without a key works, writes still need one.
    with TestClient(create_app(container=make_container(ctx, open_reads=True))) as open_client:
        assert open_client.get("/v1/models").status_code == 200
        assert open_client.post("/v1/models", json={"name": "y"}).status_code == 401


def test_bad_inputs_name_the_item_and_write_nothing(
    client: TestClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    seed(client, writer)
    existing = register(client, writer, "taken", evaluations=scores(1))
    cases: list[tuple[Any, int, str, tuple[str, ...]]] = [
        (
            {"name": "m", "evaluations": [*scores(1)[:3], {"question": "ghost", "score": 1}]},
            422,
            "UnknownQuestions",
            ("'ghost'",),
        ),
        (
            {"name": "m", "evaluations": [{"question": "q3", "score": 1.5}]},
            422,
            "ValidationError",
            ("evaluations[0] ('q3').score", "1.5"),
        ),
        (
            {"name": "m", "evaluations": [{"question": "q3", "score": -0.1}]},
            422,
            "ValidationError",
            ("'q3'",),
        ),
        (
            {"name": "m", "evaluations": [{"question": "q3", "score": "high"}]},
            422,
            "ValidationError",
            ("score",),
        ),
        ({"name": "taken"}, 409, "NameTaken", ("'taken'",)),
        ({"name": "   "}, 422, "ValidationError", ("name",)),
        ({"name": "m", "colour": "red"}, 422, "ValidationError", ("colour",)),
        ({"name": "m", "status": "retired"}, 422, "ValidationError", ("status",)),
        ({"name": "m", "params_b": -1}, 422, "ValidationError", ("params_b",)),
        (
            {"name": "m", "evaluations": [{"question": "q1", "score": 1}, {"question": "q1", "score": 0}]},
            422,
            "InvalidInput",
            ("'q1'",),
        ),
        (
            {"name": "m", "evaluations": [{"question": "q1", "score": 1, "text": "different"}]},
            409,
            "QuestionConflict",
            ("'q1'",),
        ),
        (
            {"name": "m", "evaluations": scores(0, [f"k{i}" for i in range(501)])},
            413,
            "PayloadTooLarge",
            ("501",),
        ),
        ({}, 422, "ValidationError", ("body.name", "Field required")),
    ]
    for body, status, error, needles in cases:
        assert_error(client.post("/v1/models", json=body, headers=writer), status, error, *needles)
    r = client.post(
        "/v1/models", content=b'{"name": "m", ', headers={**writer, "content-type": "application/json"}
    )
    assert_error(r, 422, "MalformedJSON", "JSON")
    r = client.post("/v1/models", content=b"", headers={**writer, "content-type": "application/json"})
    assert r.status_code == 422
    big = {"name": "m", "metadata": {"blob": "x" * 250_000}}
    assert_error(client.post("/v1/models", json=big, headers=writer), 413, "PayloadTooLarge", "200000")
    assert_error(
        client.post("/v1/questions", json={"questions": []}, headers=writer),
        422,
        "ValidationError",
        "questions",
    )
    assert_error(
        client.post("/v1/questions", json={"questions": [{"key": "z", "text": " "}]}, headers=writer),
        422,
        "ValidationError",
        "('z').text",
    )
    assert_error(client.get("/v1/models/not-a-uuid", headers=reader), 422, "ValidationError", "model_id")
    assert_error(
        client.get("/v1/models", params={"limit": 0}, headers=reader), 422, "ValidationError", "limit"
    )
    mid = existing["id"]
    assert_error(
        client.post(
            f"/v1/models/{mid}/evaluations",
            json={"evaluations": [{"question": "nope", "score": 0}]},
            headers=writer,
        ),
        422,
        "UnknownQuestions",
        "'nope'",
    )
    assert_error(
        client.patch(f"/v1/models/{mid}", json={"status": None}, headers=writer),
        422,
        "ValidationError",
        "status",
    )
    empty = register(client, writer, "empty")
    assert_error(
        client.get(f"/v1/models/{empty['id']}/similar", headers=reader), 409, "EmbeddingMissing", empty["id"]
    )
    # Nothing half-written: only the two valid models, the original questions and scores.
    assert n_models(client, reader) == 2
    assert client.get("/v1/questions", headers=reader).json()["total"] == len(QUESTIONS)
    assert client.get(f"/v1/models/{mid}/evaluations", headers=reader).json()["total"] == len(QUESTIONS)


@dataclass
class BrokenIndex:
    inner: Any

    def upsert_models(self, points: Sequence[ModelPoint]) -> None:
        raise TimeoutError("qdrant timed out")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_failed_vector_write_is_503_and_rolled_back(
    ctx: Context, writer: dict[str, str], reader: dict[str, str]
) -> None:
    broken = Context(ctx.session_factory, BrokenIndex(ctx.index), ctx.embedder)
    services.add_questions(ctx, [QuestionIn(**q) for q in QUESTIONS])
    with TestClient(create_app(container=make_container(broken))) as c:
        r = c.post("/v1/models", json={"name": "m", "evaluations": scores(1)}, headers=writer)
        assert_error(r, 503, "IndexUnavailable", "TimeoutError")
        assert n_models(c, reader) == 0


def test_inline_questions(client: TestClient, writer: dict[str, str], reader: dict[str, str]) -> None:
    evals = [{"question": "fresh", "score": 1, "text": "What colour is the sky?", "benchmark": "demo"}]
    m = register(client, writer, "inline", evaluations=evals)
    assert m["embedding"]["n_evaluations"] == 1
    qs = client.get("/v1/questions", params={"benchmark": "demo"}, headers=reader).json()
    assert [q["key"] for q in qs["items"]] == ["fresh"]
