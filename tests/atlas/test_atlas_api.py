"""GET /v1/atlas: every embedded model on the map, cached per encoder and registry state; page assets."""

from __future__ import annotations

from fastapi.testclient import TestClient

from locus_registry_client import LocusClient
from tests.client.fleet import PATTERNS, evals


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_atlas_maps_every_model_and_caches_the_projection(
    client: TestClient, read_key: str, write_key: str, fleet: dict[str, str]
) -> None:
    r = client.get("/v1/atlas", headers=bearer(read_key))
    assert r.status_code == 200, r.text
    first = r.json()
    assert {p["name"] for p in first["points"]} == set(fleet)
    assert (
        first["cached"] is False and first["compute_ms"] > 0 and first["method"] == "tsne"
    )  # auto: t-SNE for small registries
    flag = next(p for p in first["points"] if p["name"] == "flagship")
    assert flag["params_b"] == 70 and flag["n_evaluations"] == 24 and flag["cluster"].startswith("c")
    cache = client.app.state.atlas_cache  # type: ignore[attr-defined]
    assert cache.computations == 1

    again = client.get("/v1/atlas", headers=bearer(read_key)).json()
    assert again["cached"] is True and cache.computations == 1
    assert [(p["x"], p["y"]) for p in again["points"]] == [(p["x"], p["y"]) for p in first["points"]]

    with LocusClient(http=client, api_key=write_key) as lc:
        # Metadata edits are shown at once without a new projection ...
        lc.update_model(fleet["beta"], name="beta-renamed")
        renamed = client.get("/v1/atlas", headers=bearer(read_key)).json()
        assert renamed["cached"] is True and "beta-renamed" in {p["name"] for p in renamed["points"]}
        # ... a new model or new scores change the registry state, so the map is recomputed.
        lc.register(name="epsilon", evaluations=evals(PATTERNS["gamma"][::-1]))
    grown = client.get("/v1/atlas", headers=bearer(read_key)).json()
    assert grown["cached"] is False and grown["state"] != first["state"] and len(grown["points"]) == 7
    assert cache.computations == 2

    for method in ("pca", "isomap", "tsne"):
        other = client.get("/v1/atlas", params={"method": method}, headers=bearer(read_key)).json()
        assert other["method"] == method and len(other["points"]) == 7


def test_atlas_needs_a_read_key_and_counts_models_without_embedding(
    client: TestClient, read_key: str, write_key: str
) -> None:
    r = client.get("/v1/atlas")
    assert r.status_code == 401 and r.json()["error"] == "Unauthenticated"
    with LocusClient(http=client, api_key=write_key) as lc:
        lc.register(name="no-scores-yet")
    empty = client.get("/v1/atlas", headers=bearer(read_key)).json()
    assert empty["points"] == [] and empty["models_without_embedding"] == 1
    bad = client.get("/v1/atlas", params={"method": "umap"}, headers=bearer(read_key))
    assert bad.status_code == 422 and "method" in bad.json()["detail"]


def test_atlas_page_and_assets_are_served_offline(client: TestClient) -> None:
    page = client.get("/atlas")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/atlas/static/plotly-basic.min.js" in page.text and "http" not in page.text.split("<body>")[0]
    plotly = client.get("/atlas/static/plotly-basic.min.js")
    assert plotly.status_code == 200 and plotly.content.startswith(b"/**\n* plotly.js (basic - minified) v")
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert client.get("/atlas/static/plotly.min.js").status_code == 404  # the full bundle is not served
    assert client.get("/atlas/static/atlas.js").status_code == 200
    missing = client.get("/atlas/static/../app.py")
    assert missing.status_code == 404
    unknown = client.get("/atlas/static/secrets.txt")
    assert unknown.status_code == 404 and unknown.json()["error"] == "NotFound"
