"""Engine and session factory construction for SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
import weakref
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from registry.tables import METADATA_ONLY_UPDATES, STATE_COUNTERS

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

        # Counted first: a commit bumps the counters (a write) before the writer queue lets the next in.
        _count_changes(engine)
        _queue_writers(engine, float(kwargs["connect_args"].get("timeout", 30)))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    _count_changes(engine)
    return engine


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
_WRITER_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def writer_lock(engine: Engine) -> threading.Lock | None:
    """The lock this process's writers of a SQLite engine queue on (None: not SQLite)."""
    return _WRITER_LOCKS.get(engine)


def _queue_writers(engine: Engine, timeout: float) -> None:
    """SQLite takes one writer at a time, and a writer that finds the lock taken polls for it with
    sleeps growing to 100 ms: under 8 concurrent registrations some writers lost that lottery for over a
    second (p99 1.7 s at a p50 of 38 ms, `benchmarks/load.py`). Writers of this process instead queue on
    a lock taken at a transaction's first write statement and released at its commit or rollback, so the
    SQLite lock is free whenever one of them asks for it. A writer that waits longer than the connection
    timeout goes on without the lock (SQLite's own waiting then decides, as before); another process's
    writers are not affected."""
    lock = _WRITER_LOCKS[engine] = threading.Lock()

    def take(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        info = conn.info
        if "queued_writer" not in info and statement.lstrip()[:7].upper().startswith(_WRITES):
            info["queued_writer"] = lock.acquire(timeout=timeout)

    def give(info: dict[str, Any]) -> None:
        if info.pop("queued_writer", False):
            lock.release()

    event.listen(engine, "before_cursor_execute", take)
    event.listen(engine, "commit", lambda conn: give(conn.info))
    event.listen(engine, "rollback", lambda conn: give(conn.info))
    # A connection returned to the pool without a commit or rollback through SQLAlchemy (closed
    # mid-transaction, invalidated) is rolled back by the pool: release there too.
    event.listen(engine.pool, "reset", lambda _dbapi, record, _state: give(record.info))
    event.listen(engine.pool, "invalidate", lambda _dbapi, record, _exc: give(record.info))


# The table a DML statement writes ("INSERT INTO x", "INSERT OR REPLACE INTO x", "UPDATE x", "DELETE FROM x"),
# schema-qualified or quoted too.
_DML = re.compile(
    r"\s*(INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+"
    r'(?:"?\w+"?\.)?"?(\w+)"?',
    re.IGNORECASE,
)
_ALL_COUNTERS = frozenset(c for kinds in STATE_COUNTERS.values() for c in kinds)
MIGRATING = "registry_state_off"  # set in a connection's info while migrations run (the table may not exist)


def _count_changes(engine: Engine) -> None:
    """Bump `registry_state`'s counters (`registry.tables.STATE_COUNTERS`) in the transaction of every
    write, just before it commits: readers that key caches on the counters see new data and a new
    counter together, in every process. The bump is the transaction's last statement, so on PostgreSQL
    the row lock it takes is held only for the commit itself and never waited on while holding another
    lock (no deadlock). A statement that writes in a way this cannot name (a CTE) bumps every counter."""

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        head = statement.lstrip()[:7].upper()
        if head.startswith("WITH"):
            if re.search(r"\b(INSERT|UPDATE|DELETE)\b", statement, re.IGNORECASE):
                conn.info.setdefault("state_bump", set()).update(_ALL_COUNTERS)
            return
        if not head.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
            return
        m = _DML.match(statement)
        if m is None:
            conn.info.setdefault("state_bump", set()).update(_ALL_COUNTERS)
            return
        verb, table = m.group(1).upper(), m.group(2).lower()
        kinds = STATE_COUNTERS.get(table)
        if kinds:
            if verb.startswith("UPDATE") and table in METADATA_ONLY_UPDATES:
                kinds = ("metadata",)
            conn.info.setdefault("state_bump", set()).update(kinds)

    def bump(conn: Any) -> None:
        kinds = conn.info.pop("state_bump", None)
        if not kinds or conn.info.get(MIGRATING):
            return
        sets = ", ".join(f"{k} = {k} + 1" for k in sorted(kinds))  # names from STATE_COUNTERS only
        cursor = conn.connection.cursor()  # the DBAPI cursor: inside this transaction, no events
        try:
            cursor.execute(f"UPDATE registry_state SET {sets} WHERE id = 1")
        finally:
            cursor.close()

    def forget(info: dict[str, Any]) -> None:
        info.pop("state_bump", None)

    event.listen(engine, "before_cursor_execute", seen)
    event.listen(engine, "commit", bump)
    event.listen(engine, "rollback", lambda conn: forget(conn.info))
    event.listen(engine.pool, "reset", lambda _dbapi, record, _state: forget(record.info))
    event.listen(engine.pool, "invalidate", lambda _dbapi, record, _exc: forget(record.info))


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
