"""The registry drives a real `litellm.Router` (offline: deployments answer with `mock_response`)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import litellm
import pytest
from fastapi.testclient import TestClient

from locus_registry_client import LocusClient
from locus_registry_client.litellm import AUTO_MODEL, LocusRouting
from tests.client.fleet import META
from tests.integrations.conftest import FAILING, answer_of

MESSAGES = [{"role": "user", "content": "What is 7 times 10?"}]


def export(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/export/litellm", params=params, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    config: dict[str, Any] = r.json()
    return config


def fallbacks_of(config: dict[str, Any], key: str = "fallbacks") -> dict[str, list[str]]:
    return {k: v for entry in config[key] for k, v in entry.items()}


def test_export_carries_metadata_and_capable_fallbacks(
    client: TestClient, key: str, lc: LocusClient, fleet: dict[str, str]
) -> None:
    config = export(client, key)
    by_name = {d["model_name"]: d for d in config["model_list"]}
    assert set(by_name) == set(fleet)
    flag = by_name["flagship"]
    assert flag["litellm_params"]["model"] == "openai/flagship"
    info = flag["model_info"]
    assert info["id"] == info["registry_id"] == fleet["flagship"]
    assert info["max_input_tokens"] == 128000 and info["params_b"] == 70 and info["license"] == "closed"
    assert info["input_cost_per_token"] == pytest.approx(3.0e-6)
    assert info["n_evaluations"] == 24 and info["encoder_fingerprint"]

    # The nearest model by behaviour is the mini (one answer apart) with a 16x smaller context window ...
    assert lc.similar(fleet["flagship"], k=1).items[0].model.name == "flagship-mini"
    # ... so no exported fallback list sends a model to one with less context than its own.
    window = {n: META[n]["context_window"] for n in fleet}
    fallbacks = fallbacks_of(config)
    assert fallbacks["flagship"][0] == "flagship-long"
    for primary, chain in fallbacks.items():
        if primary in window:
            assert chain and all(window[f] >= window[primary] for f in chain), (primary, chain)
    for primary, chain in fallbacks_of(config, "context_window_fallbacks").items():
        assert all(window[f] > window[primary] for f in chain), (primary, chain)
    assert fallbacks[AUTO_MODEL] == [f"{AUTO_MODEL}:{i}" for i in (1, 2, 3)]

    # Hard constraints of the request hold too: licence and price.
    cheap = fallbacks_of(export(client, key, no_pricier=True, k=5))
    assert "delta" not in cheap["flagship"]  # 10 + 30 USD / 1M tokens against the flagship's 3 + 9
    assert "flagship" not in fallbacks_of(export(client, key, same_license=True, k=5)).get("beta", [])


def test_exported_config_loads_unchanged_and_fails_over_to_the_capable_neighbour(
    client: TestClient, key: str, fleet: dict[str, str]
) -> None:
    config = export(client, key)
    router = litellm.Router(**config)
    response = router.completion(model=FAILING, messages=MESSAGES)
    assert response.choices[0].message.content == answer_of("flagship-long")
    assert response._hidden_params["model_id"] == fleet["flagship-long"]
    assert response.choices[0].message.content != answer_of("flagship-mini")

    proxy = export(client, key, format="proxy")
    assert set(proxy) == {"model_list", "router_settings"}
    assert litellm.Router(model_list=proxy["model_list"], **proxy["router_settings"]).model_names


def test_routing_strategy_asks_the_registry_and_falls_back_along_capable_neighbours(
    client: TestClient, key: str, lc: LocusClient, fleet: dict[str, str]
) -> None:
    config = export(client, key)
    routed = lc.route([MESSAGES[0]["content"]], candidates=list(fleet.values()), top_k=1, fallbacks=0)
    chosen = routed.routes[0].chosen.name

    # The registry's choice answers when it is up.
    healthy = copy.deepcopy(config)
    for d in healthy["model_list"]:
        d["litellm_params"]["mock_response"] = answer_of(d["model_name"])
    router = litellm.Router(**healthy)
    LocusRouting(lc, healthy["model_list"]).install(router)
    assert router.completion(model=AUTO_MODEL, messages=MESSAGES).choices[0].message.content == answer_of(
        chosen
    )

    # When it fails, the request lands on its nearest neighbour with at least its context window.
    for d in config["model_list"]:
        d["litellm_params"]["mock_response"] = (
            "litellm.InternalServerError" if d["model_name"] == chosen else answer_of(d["model_name"])
        )
    router = litellm.Router(**config)
    strategy = LocusRouting(lc, config["model_list"])
    strategy.install(router)
    window = META[chosen]["context_window"]
    capable = lc.fallbacks(routed.routes[0].chosen.id, k=10, filters={"min_context_window": window})
    expected = capable.items[0].model.name
    assert META[expected]["context_window"] >= window
    for call in ("sync", "async"):
        if call == "sync":
            response = router.completion(model=AUTO_MODEL, messages=MESSAGES)
        else:
            response = asyncio.run(router.acompletion(model=AUTO_MODEL, messages=MESSAGES))
        assert response.choices[0].message.content == answer_of(expected), call
    # Any other group is served by its own deployment.
    assert router.completion(model="gamma", messages=MESSAGES).choices[0].message.content == answer_of(
        "gamma"
    )


def test_export_refuses_an_empty_selection(client: TestClient, key: str, fleet: dict[str, str]) -> None:
    r = client.get(
        "/v1/export/litellm", params={"provider": "nobody"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 422 and r.json()["error"] == "InvalidInput"
    assert "nothing to export" in r.json()["detail"]
    r = client.get("/v1/export/litellm", params={"k": 0}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422 and "k" in r.json()["detail"]
