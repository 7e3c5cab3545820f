"""SQLite writers of one process queue on a lock (`registry.db.writer_lock`): taken at a transaction's first
write, a second writer waits for the first's commit on it instead of polling SQLite's lock, and every way
a transaction ends gives it back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from registry.db import make_engine, make_session_factory, writer_lock

TIMEOUT = 5.0  # what a leaked lock would cost the next writer


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(
        f"sqlite:///{tmp_path / 'w.db'}", connect_args={"timeout": TIMEOUT, "check_same_thread": False}
    )
    with eng.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
    yield eng
    eng.dispose()


def _insert(s: Session, x: int) -> None:
    s.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": x})


def _commit_in(engine: Engine) -> float:
    """Seconds another session needs to write and commit."""
    started = time.perf_counter()
    with make_session_factory(engine)() as s, s.begin():
        _insert(s, 0)
    return time.perf_counter() - started


def _rolled_back(s: Session) -> None:
    s.rollback()


def _closed(s: Session) -> None:
    s.close()  # mid-transaction: the pool rolls it back


def _committed(s: Session) -> None:
    s.commit()


@pytest.mark.parametrize("end", [_committed, _rolled_back, _closed])
def test_every_end_of_a_write_transaction_gives_the_lock_back(
    engine: Engine, end: Callable[[Session], None]
) -> None:
    lock = writer_lock(engine)
    assert lock is not None
    s = make_session_factory(engine)()
    s.execute(text("SELECT count(*) FROM t"))
    assert not lock.locked()  # reads never queue
    _insert(s, 1)
    assert lock.locked()
    end(s)
    assert not lock.locked()
    assert _commit_in(engine) < TIMEOUT / 5


def test_a_failed_transaction_gives_the_lock_back(engine: Engine) -> None:
    with pytest.raises(ZeroDivisionError), make_session_factory(engine)() as s, s.begin():
        _insert(s, 1)
        _ = 1 / 0
    assert not writer_lock(engine).locked()  # type: ignore[union-attr]
    assert _commit_in(engine) < TIMEOUT / 5


def test_a_second_writer_waits_for_the_first_to_commit(engine: Engine) -> None:
    first = make_session_factory(engine)()
    _insert(first, 1)  # holds the write lock until it commits
    done = threading.Event()

    def second() -> None:
        with make_session_factory(engine)() as s, s.begin():
            _insert(s, 2)
        done.set()

    th = threading.Thread(target=second)
    th.start()
    assert not done.wait(0.3)  # queued behind the open transaction, not failed
    assert writer_lock(engine).locked()  # type: ignore[union-attr]
    first.commit()
    first.close()
    assert done.wait(TIMEOUT / 5)
    th.join()
    with engine.connect() as c:
        assert sorted(x for (x,) in c.execute(text("SELECT x FROM t"))) == [1, 2]


def test_postgresql_engines_have_no_writer_queue() -> None:
    eng = make_engine("postgresql+psycopg://u@127.0.0.1:1/x")
    assert writer_lock(eng) is None  # PostgreSQL takes concurrent writers itself
    eng.dispose()
