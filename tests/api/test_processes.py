"""More than one process: two independently built app instances (own engine, own vector index, own
encoder instance, own threshold caches) on the same database give the same answers, one on qdrant-client's
local mode and one on Qdrant Edge; the server refuses several workers on an embedded index; the embedded
backend is picked as documented; the read-replica routing sends GET queries to the replica."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from api.app import create_app
from api.deps import Container
from api.server import ServeError, check_workers
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.query import QueryEncoder
from registry import db, services
from registry.db import make_engine, make_session_factory
from registry.settings import Settings
from registry.tables import Base
from registry.vectors import QdrantIndex
from registry.vectors_edge import EdgeIndex
from tests.api.conftest import bearer
from tests.conftest import SMALL


def _instance(
    url: str, qdrant: Path, query_encoder: QueryEncoder, index: type = QdrantIndex
) -> tuple[Container, TestClient]:
    torch.manual_seed(0)  # the same weights, loaded separately, as each worker loads the checkpoint
    embedder = LocusEmbedder(LocusModel(SMALL), query_encoder)
    engine = make_engine(url)
    container = Container(
        session_factory=make_session_factory(engine),
        index=index(path=str(qdrant)),
        embedder=embedder,
        settings=Settings(database_url=url, max_items=500),
        engine=engine,
    )
    container.ensure_collections()
    return container, TestClient(create_app(container=container))


@pytest.fixture
def two(
    db_url: str, tmp_path: Path, query_encoder: QueryEncoder
) -> Iterator[tuple[TestClient, TestClient, dict[str, str], list[str]]]:
    """Instance A (qdrant-client local mode) registers models; instance B (Qdrant Edge), built afterwards
    on the same database, rebuilds its own index from SQL (`reindex`, as a new worker's Qdrant server
    would already hold the vectors)."""
    setup = make_engine(db_url)
    Base.metadata.create_all(setup)
    setup.dispose()
    a_ctx, a = _instance(db_url, tmp_path / "qa", query_encoder)
    headers = bearer(services.create_api_key(a_ctx, "k", ["admin"]).key)
    ids = []
    with a:
        # distinct score patterns: models at equal distances would tie, and ties have no defined order
        for m in range(6):
            evals = [
                {
                    "question": f"q{i}",
                    "text": f"Question {i} about topic {i % 3}?",
                    "score": ((i * (m + 1) + m) % 7) / 6,
                }
                for i in range(40)
            ]
            r = a.post(
                "/v1/models",
                json={"name": f"m{m}", "provider": "p" + str(m % 2), "params_b": m + 1, "evaluations": evals},
                headers=headers,
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    b_ctx, b = _instance(db_url, tmp_path / "qb", query_encoder, EdgeIndex)
    services.reindex(b_ctx)
    with a, b:
        yield a, b, headers, ids
    for ctx in (a_ctx, b_ctx):
        ctx.close()


def _without_ids(body: Any) -> Any:
    """The answer without per-request identifiers (a routing decision's id is new on every call)."""
    if isinstance(body, dict):
        return {k: _without_ids(v) for k, v in body.items() if k != "decision_id"}
    if isinstance(body, list):
        return [_without_ids(v) for v in body]
    return body


def _alike(a: Any, b: Any) -> bool:
    """Equal, numbers within 1e-5: the two instances' vector engines compute float32 distances in
    different orders (small distances differ in their sixth digit), as no two workers on one Qdrant
    server do. Everything else (ids, names, order, verdicts, counts) must be identical."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_alike(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_alike(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5
    return bool(a == b) and type(a) is type(b)


def _same(a: TestClient, b: TestClient, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
    ra = a.request(method, path, headers=headers, **kw)
    rb = b.request(method, path, headers=headers, **kw)
    assert ra.status_code == rb.status_code == 200, (path, ra.text, rb.text)
    assert _alike(_without_ids(ra.json()), _without_ids(rb.json())), (path, ra.json(), rb.json())
    return ra.json()


def test_two_instances_answer_alike(two: tuple[TestClient, TestClient, dict[str, str], list[str]]) -> None:
    a, b, headers, ids = two
    _same(a, b, "GET", "/v1/models", headers, params={"provider": "p1"})
    _same(a, b, "GET", f"/v1/models/{ids[0]}", headers, params={"include_vector": True})
    assert len(_same(a, b, "GET", f"/v1/models/{ids[0]}/similar", headers, params={"k": 5})["items"]) == 5
    _same(a, b, "GET", f"/v1/models/{ids[1]}/fallbacks", headers)
    _same(a, b, "POST", "/v1/route", headers, json={"queries": ["Question 3 about topic 0?", "anything"]})
    _same(a, b, "POST", "/v1/portfolios", headers, json={"k": 2})
    _same(a, b, "GET", "/v1/compare", headers, params={"a": ids[0], "b": ids[1]})
    _same(a, b, "GET", "/v1/duplicates", headers)
    probe = [{"question": f"q{i}", "score": ((i * 2) % 5) / 4} for i in range(40)]
    _same(a, b, "POST", "/v1/fingerprint", headers, json={"evaluations": probe})
    # a write through one instance is read back alike through the other (SQL is shared)
    r = b.patch(f"/v1/models/{ids[2]}", json={"status": "deprecated"}, headers=headers)
    assert r.status_code == 200
    assert a.get(f"/v1/models/{ids[2]}", headers=headers).json()["status"] == "deprecated"


def test_several_workers_need_a_qdrant_server() -> None:
    check_workers(Settings(qdrant_url="http://qdrant:6333"), 4)
    check_workers(Settings(), 1)
    with pytest.raises(ServeError, match="LOCUS_QDRANT_URL"):
        check_workers(Settings(), 2)


def test_the_embedded_backend_is_qdrant_edge_unless_a_folder_holds_local_mode_data(tmp_path: Path) -> None:
    from api.wiring import build_index, embedded_backend

    fresh = Settings(qdrant_path=str(tmp_path / "fresh"))
    assert embedded_backend(fresh) == "edge"
    index = build_index(fresh)
    assert isinstance(index, EdgeIndex)
    index.close()
    old = QdrantIndex(path=str(tmp_path / "old"))  # a registry from before: local-mode data stays local
    old.ensure_collections("fp", 4, 3)
    old.close()
    assert embedded_backend(Settings(qdrant_path=str(tmp_path / "old"))) == "local"
    moved = Settings(qdrant_path=str(tmp_path / "old"), vector_backend="edge")
    assert embedded_backend(moved) == "edge"
    edge = build_index(moved)  # moved to Edge once (then `reindex`): auto stays on Edge from now on
    edge.ensure_collections("fp", 4, 3)
    edge.set_serving_alias()
    edge.close()
    assert embedded_backend(Settings(qdrant_path=str(tmp_path / "old"))) == "edge"
    assert embedded_backend(Settings(qdrant_path=":memory:")) == "local"
    with pytest.raises(ValueError, match="needs a folder"):
        build_index(Settings(qdrant_path=":memory:", vector_backend="edge"))


def test_reads_go_to_the_replica_while_reading(tmp_path: Path) -> None:
    """GET requests (db.reading set) query the read engine; writes and other requests use the primary."""
    primary = make_engine(f"sqlite:///{tmp_path / 'primary.db'}")
    replica = make_engine(f"sqlite:///{tmp_path / 'replica.db'}")
    for eng in (primary, replica):
        Base.metadata.create_all(eng)
    used: list[str] = []

    def track(name: str, eng: Engine) -> None:
        event.listen(eng, "before_cursor_execute", lambda *a, **k: used.append(name))

    track("primary", primary)
    track("replica", replica)
    sessions = make_session_factory(primary, replica)
    services.create_api_key(services.Sessions(sessions), "w", ["read"])
    assert set(used) == {"primary"}
    used.clear()
    token = db.reading.set(True)
    try:
        assert services.list_api_keys(services.Sessions(sessions)) == []  # the replica has none yet
    finally:
        db.reading.reset(token)
    assert set(used) == {"replica"}
    used.clear()
    assert len(services.list_api_keys(services.Sessions(sessions))) == 1
    assert set(used) == {"primary"}
    primary.dispose()
    replica.dispose()


def test_pool_settings_reach_the_postgresql_engine() -> None:
    from api.wiring import build_engine, build_read_engine

    cfg = Settings(
        database_url="postgresql+psycopg://u@127.0.0.1:1/x",
        database_read_url="postgresql+psycopg://u@127.0.0.1:2/x",
        db_pool_size=3,
        db_max_overflow=1,
    )
    for eng in (build_engine(cfg), build_read_engine(cfg)):
        assert eng is not None
        assert eng.pool.size() == 3 and eng.pool._max_overflow == 1  # type: ignore[attr-defined]
        eng.dispose()
    assert build_read_engine(Settings()) is None


def test_concurrent_writes_are_all_stored(ctx: Any) -> None:
    """8 clients registering and refining at once: every call succeeds and every write is stored (no
    'database is locked' on SQLite, no serialization failure on PostgreSQL)."""
    from concurrent.futures import ThreadPoolExecutor

    from registry.schemas import EvaluationIn, ModelCreate

    def client(c: int) -> list[str]:
        made = []
        for j in range(4):
            evals = [
                EvaluationIn(question=f"cq{i}", text=f"Concurrent question {i}?", score=(i + c + j) % 2)
                for i in range(16)
            ]
            model = services.register_model(ctx, ModelCreate(name=f"c{c}-{j}", evaluations=evals))
            services.add_evaluations(ctx, model.id, [EvaluationIn(question="cq0", score=0.5)])
            made.append(str(model.id))
        return made

    with ThreadPoolExecutor(8) as pool:
        ids = [i for made in pool.map(client, range(8)) for i in made]
    assert len(set(ids)) == 32
    page = services.list_models(ctx, None, limit=100)
    assert page.total == 32
    for m in page.items:
        assert m.embedding is not None and m.embedding.n_evaluations == 16
    assert len(ctx.index.scan_models(None)[0]) == 32


def test_a_race_that_keeps_failing_is_a_409() -> None:
    from sqlalchemy.exc import IntegrityError

    from api.errors import status_for
    from registry.services.retry import ATTEMPTS, ConcurrentWrite, retry_on_race

    calls = []

    @retry_on_race
    def always_collides() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(ConcurrentWrite) as caught:
        always_collides()
    assert len(calls) == ATTEMPTS and status_for(caught.value) == 409


def test_a_sqlite_file_keeps_the_connections_it_opens(tmp_path: Path) -> None:
    """SQLAlchemy's default SQLite pool closes every connection above 5 on return, so 8 concurrent
    clients reopened one every ~20 checkouts (each paying the open, the pragmas and the schema's parse);
    the pool now keeps size + overflow open, with the same cap on concurrent connections."""
    from sqlalchemy import text

    from api.wiring import build_engine

    cfg = Settings(database_url=f"sqlite:///{tmp_path / 'pool.db'}", db_pool_size=2, db_max_overflow=6)
    engine = build_engine(cfg)
    engine.dispose()  # the migrations' connection: count from an empty pool
    opened: list[int] = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    barrier = threading.Barrier(8)

    def client() -> None:
        for _ in range(20):
            with engine.connect() as conn:
                barrier.wait(timeout=10)  # all 8 hold a connection at once
                conn.execute(text("SELECT 1")).one()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert engine.pool.size() == 8 and engine.pool._max_overflow == 0  # type: ignore[attr-defined]
    assert len(opened) == 8  # opened once each, never reopened across 20 rounds
    engine.dispose()


def test_an_in_memory_sqlite_keeps_sqlalchemys_pool() -> None:
    from api.wiring import build_engine

    engine = build_engine(Settings(database_url="sqlite://", db_pool_size=2, db_max_overflow=6))
    assert type(engine.pool).__name__ == "SingletonThreadPool"
    engine.dispose()
