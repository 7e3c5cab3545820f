"""Engine and session factory construction for SQLite and PostgreSQL."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# True while serving a request that only reads (the API sets it for GET and HEAD): such sessions run
# their queries on the read replica, when one is configured. Anything flushed still goes to the primary.
reading: ContextVar[bool] = ContextVar("reading", default=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite, create the file's folder and enforce foreign keys (cascades)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        # Concurrent writers wait for the lock instead of failing at once.
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class _ReplicaRouting(Session):
    """A session whose reads go to `read_engine` while `reading` is set (and nothing is being flushed)."""

    read_engine: Engine | None = None

    def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
        if self.read_engine is not None and reading.get() and not self._flushing:
            return self.read_engine
        return super().get_bind(mapper=mapper, clause=clause, **kw)


def make_session_factory(engine: Engine, read_engine: Engine | None = None) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (services return them as schemas).

    With `read_engine` (a read replica), sessions opened while `reading` is set query the replica: a
    GET may then lag the primary by the replication delay.
    """
    if read_engine is None:
        return sessionmaker(engine, expire_on_commit=False)
    routed = type("ReplicaRoutingSession", (_ReplicaRouting,), {"read_engine": read_engine})
    return sessionmaker(engine, class_=routed, expire_on_commit=False)
