"""Promote and roll back through the API, as jobs, while requests resolve the serving encoder."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import lifecycle
from api.app import create_app
from api.serving import EmbedderCache, ServingSwitch
from encoder.query import QueryEncoder
from registry.services import Context, encoders
from tests.api.conftest import admin, make_container
from tests.lifecycle.test_encoders import other_checkpoint, populated

__all__ = ["admin", "other_checkpoint", "populated"]


@pytest.fixture
def app_client(
    populated: tuple[Context, list[uuid.UUID]], query_encoder: QueryEncoder, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    ctx, _ = populated
    monkeypatch.setattr(lifecycle, "GRACE_S", 0.0)
    container = make_container(ctx, job_workers=1, open_reads=True)
    container.serving = ServingSwitch(container, EmbedderCache(ctx.embedder, query_encoder), ttl=0.0)
    with TestClient(create_app(container=container)) as c:
        yield c


def _wait(client: TestClient, location: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(location, headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job at {location} did not finish")


def _vector(client: TestClient, model_id: uuid.UUID) -> np.ndarray:
    body = client.get(f"/v1/models/{model_id}", params={"include_vector": "true"}).json()
    return np.asarray(body["embedding"]["vector"], dtype=np.float32)


def test_promote_and_rollback_as_jobs(
    app_client: TestClient,
    populated: tuple[Context, list[uuid.UUID]],
    other_checkpoint: str,
    admin: dict[str, str],
) -> None:
    ctx, ids = populated
    r = app_client.get("/v1/encoders")
    assert r.headers["x-locus-encoder"] == f"{ctx.embedder.fingerprint}/g0"
    listed = r.json()
    assert [e["status"] for e in listed] == ["serving"] and listed[0][
        "fingerprint"
    ] == ctx.embedder.fingerprint
    before = _vector(app_client, ids[0])

    r = app_client.post("/v1/encoders", json={"path": other_checkpoint}, headers=admin)
    assert r.status_code == 201, r.text
    cand = r.json()
    assert cand["status"] == "candidate"
    assert app_client.post("/v1/encoders", json={"path": other_checkpoint}).status_code == 401

    r = app_client.post(f"/v1/encoders/{cand['id']}/promote", headers=admin)
    assert r.status_code == 202, r.text
    job = _wait(app_client, r.headers["Location"], admin)
    assert job["state"] == "succeeded", job
    assert job["result"]["fingerprint"] == cand["fingerprint"] and job["result"]["models"] == len(ids)

    statuses = {e["fingerprint"]: e["status"] for e in app_client.get("/v1/encoders").json()}
    assert statuses == {cand["fingerprint"]: "serving", ctx.embedder.fingerprint: "previous"}
    after = _vector(app_client, ids[0])  # this request is answered from the new encoder's collection
    generation = job["result"]["generation"]
    assert app_client.get("/v1/encoders").headers["x-locus-encoder"] == f"{cand['fingerprint']}/g{generation}"
    assert after.shape == before.shape and not np.allclose(after, before)
    similar = app_client.get(f"/v1/models/{ids[0]}/similar", params={"k": 3})
    assert similar.status_code == 200, similar.text

    r = app_client.post("/v1/encoders/rollback", headers=admin)
    assert r.status_code == 202, r.text
    job = _wait(app_client, r.headers["Location"], admin)
    assert job["state"] == "succeeded" and job["result"]["full_build"] is False, job
    np.testing.assert_array_equal(_vector(app_client, ids[0]), before)


def test_lifecycle_errors_are_clear(app_client: TestClient, admin: dict[str, str], tmp_path: Path) -> None:
    r = app_client.post(f"/v1/encoders/{uuid.uuid4()}/promote", headers=admin)
    assert r.status_code == 404 and r.json()["error"] == "EncoderNotFound"
    r = app_client.post("/v1/encoders/rollback", headers=admin)
    assert r.status_code == 409 and "no previous encoder" in r.json()["detail"]
    r = app_client.post("/v1/encoders", json={"path": str(tmp_path / "missing")}, headers=admin)
    assert r.status_code == 422 and "cannot load" in r.json()["detail"]
    serving = app_client.get("/v1/encoders").json()[0]
    r = app_client.post(f"/v1/encoders/{serving['id']}/promote", headers=admin)
    assert r.status_code == 202
    job = _wait(app_client, r.headers["Location"], admin)
    assert job["state"] == "failed" and "already serving" in job["error"]


def test_serving_switch_follows_sql(
    populated: tuple[Context, list[uuid.UUID]], query_encoder: QueryEncoder
) -> None:
    """A second process (its own switch) picks up a promotion made elsewhere within its TTL."""
    ctx, _ = populated
    other = make_container(ctx)
    switch = ServingSwitch(other, EmbedderCache(ctx.embedder, query_encoder), ttl=0.0)
    assert switch.current().embedder.fingerprint == ctx.embedder.fingerprint
    serving = encoders.serving_encoder(ctx)
    encoders.switch_to(
        ctx, serving.id, EmbedderCache(ctx.embedder, None), _NullHandle(), rebuild=True, grace_s=0
    )
    bound = switch.current()
    assert bound.index.models_collection.endswith("_g1")  # type: ignore[attr-defined]


class _NullHandle:
    id = uuid.uuid4()
    params: ClassVar[dict[str, Any]] = {}
    attempt = 1

    def progress(self, stage: str, done: int, total: int | None) -> None:
        return None

    def log(self, message: str) -> None:
        return None
