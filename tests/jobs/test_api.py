"""/v1/jobs over HTTP with the app's own runner thread: submit (202 + Location), follow, cancel, imports."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.services import Context
from tests.api.conftest import make_container
from tests.jobs.conftest import Recorder
from tests.jobs.data import write_normalised


@pytest.fixture
def app(ctx: Context, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "imports").mkdir()
    container = make_container(
        ctx, job_dir=tmp_path / "jobs", import_root=tmp_path / "imports", job_lease_s=5
    )
    with TestClient(create_app(container=container)) as c:
        yield c


def wait(app: TestClient, headers: dict[str, str], job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = app.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_submit_follow_list_cancel(
    app: TestClient, recorder: Recorder, writer: dict[str, str], reader: dict[str, str]
) -> None:
    r = app.post("/v1/jobs", json={"kind": "count", "params": {"n": 3}}, headers=writer)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["state"] == "queued"
    assert job["created_by"].startswith("key:") and job["created_by"].endswith(":writer")
    done = wait(app, reader, job["id"])
    assert done["state"] == "succeeded" and done["result"] == {"counted": 3, "attempt": 1}
    assert (done["stage"], done["done"], done["total"]) == ("count", 3, 3)

    page = app.get("/v1/jobs", params={"state": "succeeded", "kind": "count"}, headers=reader).json()
    assert [j["id"] for j in page["items"]] == [job["id"]] and page["total"] == 1
    assert app.get("/v1/jobs", params={"state": "done"}, headers=reader).status_code == 422
    kinds = {k["kind"]: k for k in app.get("/v1/jobs/kinds", headers=reader).json()}
    assert kinds["count"]["scope"] == "write" and kinds["import"]["scope"] == "admin"
    assert "path" in kinds["import"]["params_schema"]["properties"]

    again = app.post(f"/v1/jobs/{job['id']}/cancel", headers=writer)
    assert again.status_code == 200 and again.json()["state"] == "succeeded"  # finished: unchanged
    long = app.post("/v1/jobs", json={"kind": "count", "params": {"n": 5000, "pause": 0.01}}, headers=writer)
    while app.get(f"/v1/jobs/{long.json()['id']}", headers=reader).json()["done"] == 0:
        time.sleep(0.05)
    assert app.post(f"/v1/jobs/{long.json()['id']}/cancel", headers=writer).json()["cancel_requested"]
    assert wait(app, reader, long.json()["id"])["state"] == "cancelled"


def test_refusals(
    app: TestClient, recorder: Recorder, writer: dict[str, str], reader: dict[str, str]
) -> None:
    bad = app.post("/v1/jobs", json={"kind": "count", "params": {"n": "x"}}, headers=writer)
    assert bad.status_code == 422 and "params.n" in bad.json()["detail"]
    unknown = app.post("/v1/jobs", json={"kind": "nope"}, headers=writer)
    assert unknown.status_code == 422 and "count" in unknown.json()["detail"]
    assert "import" in unknown.json()["detail"]
    forbidden = app.post("/v1/jobs", json={"kind": "import", "params": {"path": "x"}}, headers=writer)
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["detail"]
    assert app.post("/v1/jobs", json={"kind": "count"}, headers=reader).status_code == 403
    assert app.post("/v1/jobs", json={"kind": "count"}).status_code == 401
    missing = app.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=reader)
    assert missing.status_code == 404
    assert app.get("/v1/jobs", headers=reader).json()["total"] == 0  # nothing was queued


def test_import_job_by_server_path_is_idempotent(
    app: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    write_normalised(tmp_path / "imports" / "syn", models=6, questions=20, seed=4)
    body = {"kind": "import", "params": {"path": "syn", "format": "normalised", "name": "syn"}}
    first = wait(app, admin, app.post("/v1/jobs", json=body, headers=admin).json()["id"])
    assert first["state"] == "succeeded", first["error"]
    assert first["result"]["models_created"] == 6 and first["result"]["evaluations"] == 120
    assert any("imported: 6 models created" in line for line in first["log"])
    second = wait(app, admin, app.post("/v1/jobs", json=body, headers=admin).json()["id"])
    assert second["result"]["models_created"] == 0 and second["result"]["sources_existing"] == 1
    models = app.get("/v1/models", headers=admin).json()
    assert models["total"] == 6 and all(m["embedding"]["n_evaluations"] == 20 for m in models["items"])

    outside = app.post("/v1/jobs", json={"kind": "import", "params": {"path": "../x"}}, headers=admin)
    assert outside.status_code == 403 and "outside the import root" in outside.json()["detail"]
    absent = app.post("/v1/jobs", json={"kind": "import", "params": {"path": "nope"}}, headers=admin)
    assert absent.status_code == 422 and "does not exist" in absent.json()["detail"]
    local = {"kind": "import", "params": {"path": str(tmp_path), "local": True}}
    assert app.post("/v1/jobs", json=local, headers=admin).status_code == 403
    fmt = {"kind": "import", "params": {"path": "syn", "format": "excel"}}
    assert "unknown format" in app.post("/v1/jobs", json=fmt, headers=admin).json()["detail"]


def test_import_job_from_upload(app: TestClient, admin: dict[str, str], tmp_path: Path) -> None:
    folder = write_normalised(tmp_path / "src" / "zipped", models=4, questions=15, seed=5)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"zipped/{f.name}")
    r = app.post(
        "/v1/jobs/imports/upload",
        params={"format": "normalised", "filename": "zipped.zip", "name": "up"},
        content=buf.getvalue(),
        headers={**admin, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202, r.text
    assert r.headers["location"].endswith(r.json()["id"])
    job = wait(app, admin, r.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["models_created"] == 4 and job["result"]["evaluations"] == 60
    assert not any((tmp_path / "jobs" / "uploads").iterdir())  # the staged upload is gone

    bad = app.post(
        "/v1/jobs/imports/upload",
        params={"format": "normalised", "filename": "x.csv"},
        content=b"not,a,normalised,folder\n",
        headers={**admin, "Content-Type": "application/octet-stream"},
    )
    failed = wait(app, admin, bad.json()["id"])
    assert failed["state"] == "failed" and failed["error"].startswith("ImportFormatError")
    assert not any((tmp_path / "jobs" / "uploads").iterdir())


def test_existing_import_endpoints_run_in_the_background_on_request(
    app: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    write_normalised(tmp_path / "imports" / "bg", models=3, questions=10, seed=12)
    body = {"format": "normalised", "path": "bg", "name": "bg"}
    r = app.post("/v1/imports", params={"background": "true"}, json=body, headers=admin)
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = wait(app, admin, r.json()["id"])
    assert job["state"] == "succeeded" and job["result"]["models_created"] == 3
    assert job["params"] == {"path": "bg", "format": "normalised", "name": "bg"}
    sync = app.post("/v1/imports", json=body, headers=admin)  # without the flag: as before
    assert sync.status_code == 200 and sync.json()["models_updated"] == 3

    csv = b"model,q1,q2\nw-a,1,0\nw-b,0,1\n"
    up = app.post(
        "/v1/imports/upload",
        params={"format": "wide-csv", "filename": "w.csv", "name": "w", "background": "true"},
        content=csv,
        headers={**admin, "Content-Type": "application/octet-stream"},
    )
    assert up.status_code == 202
    assert wait(app, admin, up.json()["id"])["result"]["models_created"] == 2
    bad = app.post("/v1/imports", params={"background": "true"}, json={**body, "path": "../x"}, headers=admin)
    assert bad.status_code == 403
