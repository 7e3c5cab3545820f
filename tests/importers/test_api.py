"""The import endpoints and the provenance reads over HTTP (same service as the CLI)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.services import Context
from tests.api.conftest import make_container
from tests.importers.conftest import LM_EVAL, lm_eval_results, write_inspect_log


@pytest.fixture
def root_client(ctx: Context, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "logs").mkdir()
    container = make_container(ctx, import_root=tmp_path / "logs")
    with TestClient(create_app(container=container)) as c:
        yield c


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"run/{f.name}")
    return buf.getvalue()


def test_upload_lm_eval_zip_then_read_provenance(root_client: TestClient, admin: dict[str, str]) -> None:
    body = _zip(LM_EVAL / "seed1")
    url = "/v1/imports/upload?format=lm-eval&filename=run.zip&metric=toy_mc%3Dacc_norm"
    r = root_client.post(url, content=body, headers={**admin, "content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json()["evaluations"] == 60 and r.json()["sources_created"] == 3
    again = root_client.post(url, content=body, headers={**admin, "content-type": "application/octet-stream"})
    assert again.json()["sources_existing"] == 3 and again.json()["sources_created"] == 0

    model = root_client.get("/v1/models", headers=admin).json()["items"][0]
    page = root_client.get(
        f"/v1/models/{model['id']}/evaluations", params={"task": "toy_mc", "limit": 100}, headers=admin
    ).json()
    assert page["total"] == 20
    prov = page["items"][0]["provenance"]
    assert (
        prov["tool"] == "lm-eval" and prov["task"] == "toy_mc" and prov["generation"]["metric"] == "acc_norm"
    )
    mean = sum(e["score"] for e in page["items"]) / 20
    assert mean == pytest.approx(lm_eval_results(LM_EVAL / "seed1")["results"]["toy_mc"]["acc_norm,none"])

    card = root_client.get(f"/v1/models/{model['id']}/provenance", headers=admin).json()
    assert sorted(c["provenance"]["task"] for c in card) == ["toy_gen", "toy_mc", "toy_mc_2shot"]
    # A decision can rest on the scores of one provenance only: the embedding from them alone.
    sub = root_client.get(
        f"/v1/models/{model['id']}/embedding", params={"task": "toy_mc"}, headers=admin
    ).json()
    full = root_client.get(f"/v1/models/{model['id']}/embedding", headers=admin).json()
    stored = root_client.get(
        f"/v1/models/{model['id']}", params={"include_vector": True}, headers=admin
    ).json()
    assert sub["n_evaluations"] == 20 and full["n_evaluations"] == 60
    assert full["vector"] == pytest.approx(stored["embedding"]["vector"], abs=1e-6)
    assert sub["vector"] != pytest.approx(full["vector"], abs=1e-6)
    none = root_client.get(f"/v1/models/{model['id']}/embedding", params={"tool": "helm"}, headers=admin)
    assert none.status_code == 422 and "no evaluations of this provenance" in none.json()["detail"]
    sources = root_client.get("/v1/evaluation-sources", params={"tool": "lm-eval"}, headers=admin).json()
    assert sources["total"] == 3 and {s["evaluations"] for s in sources["items"]} == {20}


def test_server_path_import_stays_under_the_root(
    root_client: TestClient, admin: dict[str, str], writer: dict[str, str], tmp_path: Path
) -> None:
    write_inspect_log(tmp_path / "logs" / "a.eval", task="trivia", model="m/one", samples=[(1, "Q?", ["C"])])
    ok = root_client.post("/v1/imports", json={"format": "inspect", "path": "a.eval"}, headers=admin)
    assert ok.status_code == 200, ok.text
    assert ok.json()["models_created"] == 1
    outside = root_client.post("/v1/imports", json={"format": "inspect", "path": "../x.eval"}, headers=admin)
    assert outside.status_code == 403 and outside.json()["error"] == "Forbidden"
    assert (
        root_client.post(
            "/v1/imports", json={"format": "inspect", "path": "a.eval"}, headers=writer
        ).status_code
        == 403
    )
    unknown = root_client.post("/v1/imports", json={"format": "nope", "path": "a.eval"}, headers=admin)
    assert unknown.status_code == 422 and "unknown format" in unknown.json()["detail"]


def test_bad_uploads_get_a_422_naming_the_problem(root_client: TestClient, admin: dict[str, str]) -> None:
    headers = {**admin, "content-type": "application/octet-stream"}
    r = root_client.post(
        "/v1/imports/upload?format=wide-csv&filename=s.csv", content=b"model,Q?\nm,2\n", headers=headers
    )
    assert (
        r.status_code == 422
        and "s.csv, line 2" in r.json()["detail"]
        and "outside [0, 1]" in r.json()["detail"]
    )
    r = root_client.post(
        "/v1/imports/upload?format=wide-csv&filename=s.csv", content=b"\xff\xfe\x00bad", headers=headers
    )
    assert r.status_code == 422 and "not UTF-8" in r.json()["detail"]
    r = root_client.post(
        "/v1/imports/upload?format=routerbench&filename=r.pkl", content=b"\x80\x04.", headers=headers
    )
    assert r.status_code == 422 and "pickle" in r.json()["detail"]
    r = root_client.post("/v1/imports/upload?format=lm-eval&filename=x.zip", content=b"nope", headers=headers)
    assert r.status_code == 422 and "not a zip" in r.json()["detail"]


def test_server_path_imports_are_off_without_a_root(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/v1/imports", json={"format": "inspect", "path": "a.eval"}, headers=admin)
    assert r.status_code == 403 and "LOCUS_IMPORT_ROOT" in r.json()["detail"]
