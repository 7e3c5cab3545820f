"""/metrics: Prometheus text with per-route request counts and latency, and the registry's gauges."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.client.fleet import QUESTIONS, model_bodies


def scrape(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_count_requests_per_route_and_report_registry_state(
    client: TestClient, writer: dict[str, str]
) -> None:
    before = scrape(client)
    assert [v for _, v in before["locus_models"]] == [0.0]
    assert [v for _, v in before["locus_model_vectors"]] == [0.0]
    ((labels, value),) = before["locus_encoder_info"]
    assert value == 1.0 and re.fullmatch(r"[0-9a-f]{16}", labels["fingerprint"])
    assert labels["query_model"] and labels["embedding_dim"] == "16"

    assert client.post("/v1/questions", json={"questions": QUESTIONS}, headers=writer).status_code == 201
    ids = [client.post("/v1/models", json=b, headers=writer).json()["id"] for b in model_bodies()[:3]]
    for i in ids:
        assert client.get(f"/v1/models/{i}", headers=writer).status_code == 200
    assert client.get("/v1/models/not-a-uuid", headers=writer).status_code == 422

    after = scrape(client)
    assert [v for _, v in after["locus_models"]] == [3.0]
    assert [v for _, v in after["locus_model_vectors"]] == [3.0]
    assert [v for _, v in after["locus_models_needing_reindex"]] == [0.0]
    counts = {(lab["handler"], lab["method"], lab["status"]): v for lab, v in after["http_requests_total"]}
    # Routes are labelled by their template, so one series covers every model id.
    assert counts[("/v1/models/{model_id}", "GET", "2xx")] == 3.0
    assert counts[("/v1/models/{model_id}", "GET", "4xx")] == 1.0
    assert counts[("/v1/models", "POST", "2xx")] == 3.0
    assert not any(h == "/metrics" for h, _, _ in counts)
    latency = {
        lab["handler"]: v
        for lab, v in after["http_request_duration_seconds_count"]
        if lab.get("method") == "POST"
    }
    assert latency["/v1/models"] == 3.0
    assert any(n == "http_request_duration_highr_seconds_bucket" for n in after)


def test_two_apps_in_one_process_do_not_collide(client: TestClient) -> None:
    from api.app import create_app

    create_app(container=client.app.state.container)  # type: ignore[attr-defined]
    assert scrape(client)["locus_models"]
