"""LocusClient against the real app: every method round-trips typed schemas; errors are typed exceptions."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from locus_registry_client import (
    Conflict,
    Forbidden,
    InvalidInput,
    LocusClient,
    NotFound,
    TransportError,
    Unauthenticated,
)
from registry import services
from registry.decisions.schemas import PortfolioRequest
from registry.schemas import ModelRead
from registry.services import Context
from tests.client.fleet import PATTERNS, evals


def test_register_get_list_update_delete(lc: LocusClient) -> None:
    m = lc.register(
        name="solo",
        provider="acme",
        params_b=3,
        evaluations=[
            {"question": "k1", "text": "What is 2+2?", "score": 1.0, "category": "math"},
            {"question": "k2", "text": "Name the capital of Peru.", "score": 0.0},
        ],
    )
    assert isinstance(m, ModelRead)
    assert m.embedding is not None and m.embedding.n_evaluations == 2
    assert lc.get_model(m.id).name == "solo"
    assert lc.get_model(m.id, include_vector=True).embedding.vector  # type: ignore[union-attr]
    refined = lc.add_evaluations(m.id, [{"question": "k1", "score": 0.5}])
    assert refined.embedding is not None and refined.embedding.n_evaluations == 2
    assert {e.question: e.score for e in lc.list_evaluations(m.id).items} == {"k1": 0.5, "k2": 0.0}
    updated = lc.update_model(m.id, status="unavailable", params_b=None)
    assert updated.status == "unavailable" and updated.params_b is None and updated.provider == "acme"
    assert [x.name for x in lc.list_models({"status": ["unavailable"]}).items] == ["solo"]
    assert lc.list_models({"status": ["active"]}).total == 0
    lc.delete_model(m.id)
    with pytest.raises(NotFound) as err:
        lc.get_model(m.id)
    assert err.value.status_code == 404 and str(m.id) in err.value.detail


def test_iter_models_pages_through_everything(lc: LocusClient, fleet: dict[str, str]) -> None:
    assert sorted(m.name for m in lc.iter_models(page_size=2)) == sorted(fleet)
    only = lc.list_models({"provider": ["initech"], "min_params": 100})
    assert [m.name for m in only.items] == ["delta"]


def test_decisions(lc: LocusClient, fleet: dict[str, str]) -> None:
    sim = lc.similar(fleet["flagship"], k=3)
    assert len(sim.items) == 3 and str(sim.model_id) == fleet["flagship"]
    assert all(s.model.name != "flagship" for s in sim.items)

    fb = lc.fallbacks(fleet["flagship"], k=5, filters={"min_context_window": 128000})
    assert fb.items and all(f.model.name in {"flagship-long", "delta"} for f in fb.items)

    port = lc.portfolio(k=2)
    assert len(port.chosen) == 2 and port.pool_size == len(PATTERNS)
    assert len(port.left_out) == len(PATTERNS) - 2
    same = lc.portfolio(PortfolioRequest(k=2))
    assert [c.id for c in same.chosen] == [c.id for c in port.chosen]

    routed = lc.route(["What is 3 times 6?", "What is 5 times 8?"], top_k=2)
    assert len(routed.routes) == 2 and routed.candidates == len(PATTERNS)
    assert all(len(r.ranked) == 2 for r in routed.routes)

    fp = lc.fingerprint(evals(PATTERNS["gamma"]), k=2, min_shared=8)
    assert fp.matches[0].model.name == "gamma" and fp.matches[0].shared_questions == 24

    cmp = lc.compare(fleet["flagship"], fleet["flagship-mini"])
    assert cmp.a.name == "flagship" and cmp.b.name == "flagship-mini" and cmp.categories

    dup = lc.duplicates(min_shared=8)
    assert dup.fingerprint == fp.fingerprint

    by_embedding = lc.similar(fleet["flagship"], k=3, rank_by="embedding")
    assert [d.distance for d in by_embedding.items] == sorted(d.distance for d in by_embedding.items)

    probes = lc.probes(n=5)
    assert probes.n == len(probes.questions) <= 5 and probes.models == len(PATTERNS)
    assert {q.key for q in probes.questions} <= {f"q{i}" for i in range(24)}


def test_api_errors_are_typed_and_carry_error_detail_request_id(
    client: TestClient, lc: LocusClient, fleet: dict[str, str], ctx: Context
) -> None:
    with pytest.raises(Conflict) as taken:
        lc.register(name="flagship")
    assert taken.value.error == "NameTaken" and "flagship" in taken.value.detail

    with pytest.raises(InvalidInput) as unknown:
        lc.add_evaluations(fleet["beta"], [{"question": "never-registered", "score": 1.0}])
    assert unknown.value.error == "UnknownQuestions" and "never-registered" in unknown.value.detail

    with pytest.raises(NotFound) as missing:
        lc.fallbacks(uuid.uuid4())
    assert missing.value.status_code == 404

    # The request id comes from the body or the X-Request-ID header, when the server sends one.
    header = client.get(f"/v1/models/{uuid.uuid4()}", headers=lc._headers).headers.get("x-request-id")
    assert (missing.value.request_id is not None) == (header is not None)

    with LocusClient(http=client) as anonymous, pytest.raises(Unauthenticated) as anon:
        anonymous.list_models()
    assert anon.value.status_code == 401 and anon.value.detail

    read_only = services.create_api_key(ctx, "ro", ["read"]).key
    with LocusClient(http=client, api_key=read_only) as ro, pytest.raises(Forbidden) as denied:
        ro.register(name="nope")
    assert denied.value.error == "Forbidden"


def test_bad_bodies_are_refused_before_sending(lc: LocusClient) -> None:
    with pytest.raises(ValidationError):
        lc.register(name="x", evaluations=[{"question": "q", "score": 2.0}])
    with pytest.raises(ValidationError):
        lc.route([], top_k=1)


def test_unreachable_server_is_a_transport_error() -> None:
    with LocusClient("http://127.0.0.1:9", api_key="k", timeout=2) as lc, pytest.raises(TransportError):
        lc.health()
