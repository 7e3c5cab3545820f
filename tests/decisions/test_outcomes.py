"""Route outcomes: decision ids on routes, outcomes stored as evaluations with provenance, idempotent
per decision, refused past the window (over HTTP, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from registry.db import make_engine, make_session_factory
from registry.decisions.schemas import RouteRequest
from registry.decisions.service import route_queries
from registry.decisions.service.outcomes import QUESTION_PREFIX, query_sha256
from registry.services import Context
from registry.tables import EmbeddingHistoryRow, RouteDecisionRow, utcnow
from tests.decisions.test_fingerprint_api import registered

__all__ = ["registered"]

QUERIES = ["Which prime follows 13?", "Summarise the causes of the French Revolution in one line."]


def route(client: TestClient, headers: dict[str, str], **extra: object) -> list[dict[str, object]]:
    r = client.post("/v1/route", json={"queries": QUERIES, **extra}, headers=headers)
    assert r.status_code == 200, r.text
    routes: list[dict[str, object]] = r.json()["routes"]
    return routes


def outcome(client: TestClient, headers: dict[str, str], **body: object) -> tuple[int, dict[str, object]]:
    r = client.post("/v1/route/outcomes", json=body, headers=headers)
    out: dict[str, object] = r.json()
    return r.status_code, out


def test_routes_carry_decision_ids_stored_in_one_batch_without_the_text(
    ctx: Context, client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    routes = route(client, reader)
    ids = [uuid.UUID(str(r["decision_id"])) for r in routes]
    assert len(set(ids)) == 2
    with ctx.session_factory() as s:
        rows = {r.id: r for r in s.scalars(select(RouteDecisionRow))}
    assert set(rows) == set(ids)
    for r, q in zip(routes, QUERIES, strict=True):
        row = rows[uuid.UUID(str(r["decision_id"]))]
        assert row.query_sha256 == query_sha256(q) and row.query_text is None  # privacy: hash only
        assert str(row.model_id) == r["chosen"]["id"]  # type: ignore[index]
        assert row.fingerprint == ctx.embedder.fingerprint and row.predicted is not None
    kept = route(client, reader, keep_queries=True)
    with ctx.session_factory() as s:
        row = s.get(RouteDecisionRow, uuid.UUID(str(kept[1]["decision_id"])))
        assert row is not None and row.query_text == QUERIES[1]


def test_an_outcome_becomes_an_evaluation_once(
    ctx: Context,
    client: TestClient,
    reader: dict[str, str],
    writer: dict[str, str],
    registered: dict[str, str],
) -> None:
    r0 = route(client, reader)[0]
    did, chosen = r0["decision_id"], r0["chosen"]["id"]  # type: ignore[index]
    before = client.get(f"/v1/models/{chosen}", headers=reader).json()["embedding"]["n_evaluations"]

    status, body = outcome(client, writer, decision_id=did, score=1.0)
    assert status == 422 and "question_text" in str(body["detail"])  # only the hash was kept
    status, body = outcome(client, writer, decision_id=did, score=1.0, question_text="another query")
    assert status == 422 and "SHA-256" in str(body["detail"])
    status, body = outcome(client, writer, decision_id=did, score=1.0, question_text=QUERIES[0])
    assert status == 201, body
    key = QUESTION_PREFIX + query_sha256(QUERIES[0])
    assert body["created"] is True and body["question"] == key and body["model_id"] == chosen
    assert body["n_evaluations"] == before + 1

    evs = client.get(f"/v1/models/{chosen}/evaluations", params={"limit": 1000}, headers=reader).json()
    mine = [e for e in evs["items"] if e["question"] == key]
    assert len(mine) == 1 and mine[0]["score"] == 1.0 and mine[0]["source"] == "route-outcome"
    assert mine[0]["provenance"]["tool"] == "route-outcome"
    with ctx.session_factory() as s:
        reasons = list(
            s.scalars(
                select(EmbeddingHistoryRow.reason).where(EmbeddingHistoryRow.model_id == uuid.UUID(chosen))
            )
        )
    assert "outcome" in reasons  # the model was re-embedded with it

    status, again = outcome(client, writer, decision_id=did, score=1.0)  # same outcome: a no-op
    assert status == 200 and again["created"] is False
    status, clash = outcome(client, writer, decision_id=did, score=0.0)
    assert status == 409 and clash["error"] == "OutcomeConflict"
    after = client.get(f"/v1/models/{chosen}", headers=reader).json()["embedding"]["n_evaluations"]
    assert after == before + 1

    status, _ = outcome(client, reader, decision_id=did, score=1.0)
    assert status == 403
    status, unknown = outcome(client, writer, decision_id=str(uuid.uuid4()), score=1.0)
    assert status == 404 and "outcome window" in str(unknown["detail"])
    status, _ = outcome(client, writer, decision_id=did, score=1.5)
    assert status == 422


def test_kept_text_serves_the_outcome_and_old_decisions_are_refused_then_pruned(
    ctx: Context,
    client: TestClient,
    reader: dict[str, str],
    writer: dict[str, str],
    registered: dict[str, str],
) -> None:
    first, second = route(client, reader, keep_queries=True)
    status, body = outcome(client, writer, decision_id=first["decision_id"], score=0.0)
    assert status == 201 and body["created"] is True  # the kept text made the question

    old = utcnow() - dt.timedelta(days=8)
    with ctx.session_factory() as s, s.begin():
        s.execute(update(RouteDecisionRow).values(created_at=old))
    status, expired = outcome(client, writer, decision_id=second["decision_id"], score=1.0)
    assert status == 409 and expired["error"] == "OutcomeExpired" and "7 days" in str(expired["detail"])

    from registry.decisions.service import outcomes

    outcomes._pruned_at = 0.0  # the next route request prunes (at most once a minute otherwise)
    route(client, reader)
    with ctx.session_factory() as s:
        left = s.scalar(
            select(func.count())
            .select_from(RouteDecisionRow)
            .where(RouteDecisionRow.created_at < utcnow() - dt.timedelta(days=7))
        )
    assert left == 0


def test_a_busy_database_routes_without_decision_ids(
    ctx: Context, db_url: str, client: TestClient, reader: dict[str, str], registered: dict[str, str]
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the lock is SQLite's: PostgreSQL inserts beside a long transaction without waiting")
    impatient = make_engine(db_url, connect_args={"timeout": 0.2, "check_same_thread": False})
    busy = Context(session_factory=make_session_factory(impatient), index=ctx.index, embedder=ctx.embedder)
    lock = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")  # a writer holding the lock, as a long import does
        read = route_queries(busy, RouteRequest(queries=QUERIES))
        assert len(read.routes) == 2 and all(r.decision_id is None for r in read.routes)
    finally:
        lock.rollback()
        lock.close()
        impatient.dispose()
    assert all(r["decision_id"] is not None for r in route(client, reader))  # once free, recorded again
