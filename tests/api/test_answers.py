"""The answer cache (`api.answers`): a repeated `similar`/`fallbacks` is answered from its stored answer,
never after a write it depends on, never to a caller the key check would refuse, and alike in every
worker on one database."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry import services
from registry.decisions import service as decisions
from registry.schemas import EvaluationIn, ModelCreate, ModelUpdate
from registry.services import Context
from tests.api.conftest import bearer, make_container
from tests.metrics.test_metrics import scrape
from tests.registry.test_similar_cache import register


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the handlers of `similar` and `fallbacks` reached their service."""
    seen: Counter[str] = Counter()

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(services, "similar_models", counted("similar", services.similar_models))
    monkeypatch.setattr(decisions, "fallbacks", counted("fallbacks", decisions.fallbacks))
    return seen


@pytest.fixture
def ids(ctx: Context) -> list[uuid.UUID]:
    return register(ctx, n_models=6)


@pytest.fixture
def key(ctx: Context) -> dict[str, str]:
    return bearer(services.create_api_key(ctx, "reader", ["read"]).key)


def _app(ctx: Context, **settings: object) -> TestClient:
    return TestClient(create_app(container=make_container(ctx, **settings)))


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with _app(ctx) as c:
        yield c


def test_a_repeated_read_is_answered_from_its_stored_answer(
    client: TestClient, ids: list[uuid.UUID], key: dict[str, str], calls: Counter[str]
) -> None:
    for path, name in (
        (f"/v1/models/{ids[0]}/similar?k=3", "similar"),
        (f"/v1/models/{ids[1]}/fallbacks", "fallbacks"),
    ):
        first = client.get(path, headers=key)
        again = client.get(path, headers=key)
        assert first.status_code == again.status_code == 200, first.text
        assert again.content == first.content
        assert calls[name] == 1
        # what the middleware outside adds is per request, and the answering encoder is named on both
        assert again.headers["x-request-id"] != first.headers["x-request-id"]
        assert again.headers["x-locus-encoder"] == first.headers["x-locus-encoder"]
        assert again.headers["content-type"] == "application/json"
    other = client.get(f"/v1/models/{ids[0]}/similar?k=4", headers=key)  # another query: its own answer
    assert other.status_code == 200 and len(other.json()["items"]) == 4
    assert calls["similar"] == 2


def test_a_write_is_seen_by_the_next_read(
    ctx: Context, client: TestClient, ids: list[uuid.UUID], key: dict[str, str], calls: Counter[str]
) -> None:
    path = f"/v1/models/{ids[0]}/similar?k=10&status=active"
    before = client.get(path, headers=key).json()
    assert ids[1] in {uuid.UUID(it["model"]["id"]) for it in before["items"]}
    services.update_model(ctx, ids[1], ModelUpdate(status="deprecated"))  # metadata: another process's write
    after = client.get(path, headers=key).json()
    assert ids[1] not in {uuid.UUID(it["model"]["id"]) for it in after["items"]}
    # scores: a model with the same answers as ids[0] is now its nearest by behaviour
    own = services.list_evaluations(ctx, ids[0], limit=1000).items
    twin = services.register_model(
        ctx,
        ModelCreate(name="twin", evaluations=[EvaluationIn(question=e.question, score=e.score) for e in own]),
    )
    nearest = client.get(path, headers=key).json()["items"][0]
    assert uuid.UUID(nearest["model"]["id"]) == twin.id
    assert calls["similar"] == 3
    with _app(ctx, answer_cache_mb=0) as uncached:  # and every answer is what no cache would give
        assert client.get(path, headers=key).json() == uncached.get(path, headers=key).json()


def test_every_request_is_still_checked_for_a_key_that_may_read(
    ctx: Context, client: TestClient, ids: list[uuid.UUID], calls: Counter[str]
) -> None:
    made = services.create_api_key(ctx, "soon revoked", ["read"])
    path = f"/v1/models/{ids[0]}/similar"
    assert client.get(path, headers=bearer(made.key)).status_code == 200
    for headers in ({}, bearer("lr_not-a-key"), {"Authorization": "Basic abc"}):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "Unauthenticated" and r.json()["request_id"]
    services.revoke_api_key(ctx, made.id)
    assert client.get(path, headers=bearer(made.key)).status_code == 401
    assert calls["similar"] == 1


def test_open_reads_are_answered_without_a_key(
    ctx: Context, ids: list[uuid.UUID], calls: Counter[str]
) -> None:
    with _app(ctx, open_reads=True) as client:
        path = f"/v1/models/{ids[0]}/similar"
        assert client.get(path).content == client.get(path).content
    assert calls["similar"] == 1


def test_errors_are_never_stored(client: TestClient, key: dict[str, str], calls: Counter[str]) -> None:
    path = f"/v1/models/{uuid.uuid4()}/similar"
    for _ in range(2):
        r = client.get(path, headers=key)
        assert r.status_code == 404 and r.json()["error"] == "NotFound" and r.json()["request_id"]
    # each request reached the service twice: the first-ask path's attempt, then the app's, which answers
    assert calls["similar"] == 4
    assert not client.app.state.answer_cache.answers  # type: ignore[attr-defined]


SIMPLE = [
    "similar",
    "similar?k=3",
    "similar?rank_by=embedding",
    "similar?k=1000&rank_by=behaviour",
    "fallbacks",
    "fallbacks?k=2",
    "fallbacks?rank_by=embedding&k=100",
    "similar?k=%33",  # k=3, percent-encoded: FastAPI decodes it too
]
# each goes to FastAPI: another parameter, a value out of the handler's bounds or not in canonical form,
# a repeated parameter, an unknown one
NOT_SIMPLE = [
    "similar?k=3&status=active",
    "similar?k=0",
    "similar?k=03",
    "similar?k=1001",
    "similar?rank_by=other",
    "similar?k=2&k=3",
    "similar?x=1",
    "fallbacks?k=101",
    "fallbacks?same_license=false",
    "similar?k",
]


def test_the_first_ask_bounds_of_k_are_the_handlers_own(client: TestClient) -> None:
    # a bound looser than the handler's would answer 200 where the app answers 422
    import api.answers as answers

    paths = client.get("/openapi.json").json()["paths"]
    for read, (default, low, high) in answers.SIMPLE_K.items():
        params = paths[f"/v1/models/{{model_id}}/{read}"]["get"]["parameters"]
        schema = next(p for p in params if p["name"] == "k")["schema"]
        assert (schema["default"], schema["minimum"], schema["maximum"]) == (default, low, high)
        rank_by = next(p for p in params if p["name"] == "rank_by")["schema"]
        assert rank_by["default"] == "behaviour" and set(rank_by["enum"]) == {"behaviour", "embedding"}


def test_a_first_ask_computed_before_fastapi_is_byte_for_byte_the_app_s(
    ctx: Context, ids: list[uuid.UUID], key: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.answers as answers

    computed: list[str] = []
    real = answers._compute

    def spy(bound: Any, read: str, *args: Any) -> bytes:
        computed.append(read)
        return real(bound, read, *args)

    monkeypatch.setattr(answers, "_compute", spy)
    with _app(ctx) as cached, _app(ctx, answer_cache_mb=0) as plain:
        for m in (ids[0], ids[3]):
            for query in SIMPLE:
                path = f"/v1/models/{m}/{query}"
                got, want = cached.get(path, headers=key), plain.get(path, headers=key)
                assert got.status_code == want.status_code == 200, got.text
                assert got.content == want.content, path
                assert got.headers["content-type"] == want.headers["content-type"]
                assert got.headers["x-locus-encoder"] == want.headers["x-locus-encoder"]
        assert len(computed) == 2 * len(SIMPLE)  # every one of them computed before FastAPI, once
        computed.clear()
        for query in NOT_SIMPLE:
            path = f"/v1/models/{ids[0]}/{query}"
            got, want = cached.get(path, headers=key), plain.get(path, headers=key)
            assert (got.status_code, got.json().get("error")) == (want.status_code, want.json().get("error"))
        upper = cached.get(f"/v1/models/{str(ids[0]).upper()}/similar", headers=key)
        assert upper.status_code == 200
        assert computed == []  # none of those took the first-ask path


def test_two_workers_on_one_database_answer_alike_after_a_write(
    ctx: Context, ids: list[uuid.UUID], key: dict[str, str]
) -> None:
    admin = bearer(services.create_api_key(ctx, "admin", ["admin"]).key)
    path = f"/v1/models/{ids[0]}/fallbacks?k=5"
    with _app(ctx) as a, _app(ctx) as b:
        assert a.get(path, headers=key).json() == b.get(path, headers=key).json()
        assert (
            b.patch(f"/v1/models/{ids[2]}", json={"status": "unavailable"}, headers=admin).status_code == 200
        )
        seen_a, seen_b = a.get(path, headers=key).json(), b.get(path, headers=key).json()
        assert seen_a == seen_b
        assert str(ids[2]) not in {it["model"]["id"] for it in seen_a["items"]}


def test_the_least_recently_used_answer_goes_first_and_zero_turns_it_off(
    ctx: Context, ids: list[uuid.UUID], key: dict[str, str], calls: Counter[str]
) -> None:
    with _app(ctx, answer_cache_mb=0) as client:
        for _ in range(3):
            sizes = [len(client.get(f"/v1/models/{m}/similar", headers=key).content) for m in ids[:3]]
    assert calls["similar"] == 9
    assert 3 * min(sizes) > 2.5 * max(sizes)  # so the budget below holds any two answers, never three
    calls.clear()
    with _app(ctx, answer_cache_mb=2.5 * max(sizes) / 1e6) as client:
        for m in (ids[0], ids[1], ids[0], ids[2], ids[0], ids[1]):  # ids[1] dropped when ids[2] came in
            assert client.get(f"/v1/models/{m}/similar", headers=key).status_code == 200
    assert calls["similar"] == 4


def test_metrics_report_hits_misses_and_size(
    client: TestClient, ids: list[uuid.UUID], key: dict[str, str]
) -> None:
    path = f"/v1/models/{ids[0]}/similar"
    body = client.get(path, headers=key).content
    assert client.get(path, headers=key).content == body
    seen = {
        name: values[0][1] for name, values in scrape(client).items() if name.startswith("locus_answer_cache")
    }
    assert seen == {
        "locus_answer_cache_hits_total": 1.0,
        "locus_answer_cache_misses_total": 1.0,
        "locus_answer_cache_answers": 1.0,
        "locus_answer_cache_bytes": float(len(body)),
    }


def test_a_failing_counter_read_leaves_the_request_to_the_app(
    client: TestClient,
    ids: list[uuid.UUID],
    key: dict[str, str],
    calls: Counter[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(services, "answer_state", down)
    for _ in range(2):
        assert client.get(f"/v1/models/{ids[0]}/similar", headers=key).status_code == 200
    assert calls["similar"] == 2
