"""Input the databases cannot store is refused at the boundary; every response carries a request id; an
unexpected exception answers 500 in the JSON error shape, never plain text."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from api.app import create_app
from api.middleware import configure_logging
from registry.services import Context
from tests.api.conftest import make_container

NUL = "a\x00b"
SURROGATE = "a\ud800b"
CONTROL = "a\x07b"


def _raw(body: Any) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800, as any client sending one would.
    return json.dumps(body).encode()


def _post(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.post(path, content=_raw(body), headers={**headers, "content-type": "application/json"})


def _model(**extra: Any) -> dict[str, Any]:
    return {"name": "m", **extra}


# (path, body, field named in the detail) for each place text enters with a body.
BODIES: list[tuple[str, Any, str]] = [
    ("/v1/models", _model(name="m{}"), "body.name"),
    ("/v1/models", _model(provider="p{}"), "body.provider"),
    ("/v1/models", _model(family="f{}"), "body.family"),
    ("/v1/models", _model(license="l{}"), "body.license"),
    ("/v1/models", _model(tags=["t{}"]), "body.tags[0]"),
    ("/v1/models", _model(metadata={"k": "v{}"}), "body.metadata"),
    ("/v1/models", _model(metadata={"k{}": 1}), "body.metadata"),
    ("/v1/models", _model(metadata={"k": [{"deep": "v{}"}]}), "body.metadata"),
    ("/v1/models", _model(evaluations=[{"question": "q{}", "score": 1}]), "body.evaluations[0]"),
    ("/v1/models", _model(evaluations=[{"question": "q", "text": "t{}", "score": 1}]), "text"),
    ("/v1/questions", {"questions": [{"key": "k", "text": "t{}"}]}, "body.questions[0]"),
    ("/v1/questions", {"questions": [{"key": "k{}", "text": "t"}]}, "body.questions[0]"),
    ("/v1/questions", {"questions": [{"key": "k", "text": "t", "category": "c{}"}]}, "category"),
    ("/v1/route", {"queries": ["what{}"]}, "body.queries[0]"),
    ("/v1/portfolios", {"k": 1, "reference": {"texts": ["x{}"]}}, "body.reference.texts[0]"),
    ("/v1/portfolios", {"k": 1, "filters": {"provider": ["p{}"]}}, "body.filters.provider[0]"),
    ("/v1/fingerprint", {"evaluations": [{"question": "q{}", "score": 1}]}, "body.evaluations[0]"),
    ("/v1/keys", {"name": "n{}", "scopes": ["read"]}, "body.name"),
]


def _fill(body: Any, bad: str) -> Any:
    return json.loads(json.dumps(body).replace("{}", json.dumps(bad)[1:-1]))


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_unstorable_text_is_refused_everywhere(client: TestClient, admin: dict[str, str], bad: str) -> None:
    for path, template, field in BODIES:
        r = _post(client, path, _fill(template, bad), admin)
        assert r.status_code == 422, (path, template, r.text)
        body = r.json()
        assert body["error"] == "ValidationError", body
        assert field in body["detail"], (field, body)
        # pydantic itself refuses a lone surrogate in a plain string field; our check covers the rest
        what = ["NUL character (U+0000)"] if bad == NUL else ["lone surrogate (U+D800)", "unicode string"]
        assert any(w in body["detail"] for w in what), body
        assert body["request_id"] == r.headers["x-request-id"]
    # nothing was stored
    assert client.get("/v1/models", headers=admin).json()["total"] == 0
    assert client.get("/v1/questions", headers=admin).json()["total"] == 0


def test_names_are_one_line(client: TestClient, admin: dict[str, str]) -> None:
    r = _post(client, "/v1/models", _model(name=CONTROL), admin)
    assert r.status_code == 422
    assert "control character U+0007" in r.json()["detail"]
    # question texts may hold newlines and tabs
    r = _post(client, "/v1/questions", {"questions": [{"key": "k", "text": "line 1\n\tline 2"}]}, admin)
    assert r.status_code == 201, r.text


def test_unstorable_numbers_are_refused(client: TestClient, admin: dict[str, str]) -> None:
    for body, needle in [
        (_model(context_window=2**40), "context_window"),
        (_model(metadata={"x": 2**60}), "beyond +-2**53"),
        (b'{"name": "m", "metadata": {"x": NaN}}', "not a finite number"),
        (_model(metadata={"x": json.loads("[" * 20 + "]" * 20)}), "nested deeper"),
    ]:
        raw = body if isinstance(body, bytes) else _raw(body)
        r = client.post("/v1/models", content=raw, headers={**admin, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert needle in r.json()["detail"], r.text


def test_query_parameters_are_checked(client: TestClient, admin: dict[str, str]) -> None:
    for path, param in [("/v1/models", "provider"), ("/v1/models", "tag"), ("/v1/questions", "benchmark")]:
        r = client.get(path, params={param: NUL}, headers=admin)
        assert r.status_code == 422, (path, r.text)
        assert f"query.{param}" in r.json()["detail"] and "U+0000" in r.json()["detail"]
        # An encoded surrogate is not UTF-8: the server decodes it to U+FFFD, which is storable.
        r = client.get(f"{path}?{param}=%ED%A0%80", headers=admin)
        assert r.status_code == 200, r.text
    r = client.get("/v1/questions", params={"offset": 2**70}, headers=admin)
    assert r.status_code == 422


def test_unknown_query_parameter_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    r = client.get("/v1/models", params={"providr": "acme"}, headers=admin)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "UnknownParameter"
    assert "'providr'" in body["detail"] and "provider" in body["detail"]
    assert client.get("/v1/models", params={"provider": "acme", "limit": 5}, headers=admin).status_code == 200


def test_request_id_is_echoed_or_generated(client: TestClient, reader: dict[str, str]) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123.x"})
    assert r.headers["x-request-id"] == "abc-123.x"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated.isalnum()
    for insane in ["a b", "x" * 200, "évil", ""]:
        got = client.get("/healthz", headers={"X-Request-ID": insane.encode()})  # type: ignore[dict-item]
        assert got.headers["x-request-id"] != insane and len(got.headers["x-request-id"]) == 32
    missing = client.get("/v1/models/00000000-0000-0000-0000-000000000000", headers=reader)
    assert missing.status_code == 404
    assert missing.json()["request_id"] == missing.headers["x-request-id"]
    too_big = client.post("/v1/models", content=b"x" * 300_000, headers={**reader, "X-Request-ID": "big-1"})
    assert too_big.status_code == 413 and too_big.json()["request_id"] == "big-1"


def test_request_log_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="locus_registry.access"):
        client.get("/healthz", headers={"X-Request-ID": "log-me"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "locus_registry.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "GET" and line["path"] == "/healthz" and line["status"] == 200
    assert line["request_id"] == "log-me" and line["duration_ms"] >= 0


def test_a_served_process_logs_each_request_once_with_its_id(client: TestClient) -> None:
    # as `locus-registry serve` runs: the console script configures the root logger, the server its own
    root, registry = logging.getLogger(), logging.getLogger("locus_registry")
    seen_by_root = io.StringIO()
    root_handler = logging.StreamHandler(seen_by_root)
    saved = (registry.level, registry.propagate, list(registry.handlers), root.level)
    root.addHandler(root_handler)
    root.setLevel(logging.INFO)
    try:
        configure_logging("info")
        ours = next(h for h in registry.handlers if getattr(h, "_locus", False))
        assert isinstance(ours, logging.StreamHandler)
        printed = io.StringIO()
        ours.setStream(printed)
        client.get("/healthz", headers={"X-Request-ID": "log-me-once"})
    finally:
        root.removeHandler(root_handler)
        root.setLevel(saved[3])
        registry.setLevel(saved[0])
        registry.propagate = saved[1]
        registry.handlers[:] = saved[2]
    lines = [line for line in printed.getvalue().splitlines() if "locus_registry.access" in line]
    assert len(lines) == 1 and "[log-me-once]" in lines[0]
    assert "locus_registry" not in seen_by_root.getvalue()


def test_unexpected_exception_is_a_json_500(ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(container=make_container(ctx))
    boom = APIRouter()

    @boom.get("/boom")
    def explode() -> None:
        raise RuntimeError("a bug")

    @boom.get("/boom-async")
    async def explode_async() -> None:
        raise KeyError("another")

    app.include_router(boom)
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="locus_registry.error"):
        for path in ["/boom", "/boom-async"]:
            r = client.get(path, headers={"X-Request-ID": f"req{path.replace('/', '-')}"})
            assert r.status_code == 500
            assert r.headers["content-type"] == "application/json"
            body = r.json()
            assert body["error"] == "InternalError"
            assert body["request_id"] == r.headers["x-request-id"] == f"req{path.replace('/', '-')}"
            assert body["request_id"] in body["detail"]
            assert "a bug" not in body["detail"]  # internals stay in the log
    assert any("req-boom" in r.getMessage() and r.exc_info for r in caplog.records)
