"""`registry_state`'s counters (`registry.db`) change with exactly the writes their caches depend on, in the
writing transaction, on SQLite and PostgreSQL: a rolled-back write changes nothing, concurrent writers all
land and each counts, and a registry whose row is missing still sees every write."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import Engine, delete, text

from registry import repositories as repo
from registry import services
from registry.schemas import EvaluationIn, ModelCreate, ModelUpdate, QuestionIn
from registry.services import Context
from registry.tables import ModelRow, RegistryStateRow


def versions(ctx: Context) -> tuple[object, object, object]:
    with ctx.session_factory() as s:
        return repo.registry_version(s), repo.metadata_version(s), repo.question_version(s)


def changed(before: tuple[object, ...], after: tuple[object, ...]) -> tuple[bool, ...]:
    return tuple(a != b for a, b in zip(before, after, strict=True))


def register(ctx: Context, name: str) -> uuid.UUID:
    evals = [EvaluationIn(question=f"q{i}", score=float((i + len(name)) % 2)) for i in range(6)]
    return services.register_model(ctx, ModelCreate(name=name, evaluations=evals)).id


@pytest.fixture
def seeded(ctx: Context) -> Context:
    services.add_questions(ctx, [QuestionIn(key=f"q{i}", text=f"Is {i} prime?") for i in range(8)])
    return ctx


def test_each_write_changes_the_counters_its_caches_read(seeded: Context) -> None:
    ctx = seeded
    v0 = versions(ctx)
    m = register(ctx, "a")
    v1 = versions(ctx)
    assert changed(v0, v1) == (True, True, False)  # scores and metadata; no new question

    services.update_model(ctx, m, ModelUpdate(status="deprecated"))
    v2 = versions(ctx)
    assert changed(v1, v2) == (False, True, False)  # a model's columns: metadata only

    services.update_model(ctx, m, ModelUpdate(tags=["chat"]))
    v3 = versions(ctx)
    assert changed(v2, v3) == (False, True, False)

    services.add_evaluations(ctx, m, [EvaluationIn(question="q7", score=1.0)])
    v4 = versions(ctx)
    assert changed(v3, v4) == (True, True, False)

    services.add_questions(ctx, [QuestionIn(key="new", text="Is 91 prime?")])
    v5 = versions(ctx)
    assert changed(v4, v5) == (False, False, True)

    services.delete_model(ctx, m)
    assert changed(v5, versions(ctx)) == (True, True, False)


def test_reads_and_rolled_back_writes_change_nothing(seeded: Context) -> None:
    ctx = seeded
    m = register(ctx, "a")
    before = versions(ctx)
    services.similar_models(ctx, m, 3)
    services.list_models(ctx)
    with ctx.session_factory() as s, pytest.raises(RuntimeError), s.begin():
        s.execute(delete(ModelRow).where(ModelRow.id == m))
        raise RuntimeError("abort")
    assert versions(ctx) == before
    # the connection the rolled-back write ran on carries nothing into the next transaction
    with ctx.session_factory() as s, s.begin():
        s.execute(text("SELECT 1"))
    assert versions(ctx) == before


def test_concurrent_writers_all_land_and_each_counts(seeded: Context) -> None:
    ctx = seeded
    with ctx.session_factory() as s:
        start = s.get_one(RegistryStateRow, 1).scores
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            register(ctx, f"w{i}")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ctx.session_factory() as s:
        assert s.get_one(RegistryStateRow, 1).scores == start + 8  # one bump per writing transaction
        assert len(services.list_models(ctx, limit=100).items) == 8


def test_without_the_state_row_versions_still_follow_writes(seeded: Context, engine: Engine) -> None:
    ctx = seeded
    with engine.begin() as c:
        c.execute(delete(RegistryStateRow))  # a hand-deleted row: bumps update nothing
    v0 = versions(ctx)
    m = register(ctx, "a")
    v1 = versions(ctx)
    assert changed(v0, v1) == (True, True, False)
    services.update_model(ctx, m, ModelUpdate(status="deprecated"))
    assert changed(v1, versions(ctx)) == (False, True, False)


@pytest.mark.parametrize(
    ("statement", "table"),
    [
        ("INSERT INTO evaluations (a) VALUES (1)", "evaluations"),
        ('  insert into "models" (a) values (1) ON CONFLICT DO NOTHING', "models"),
        ("INSERT OR REPLACE INTO questions VALUES (1)", "questions"),
        ("UPDATE public.model_embeddings SET n = 1", "model_embeddings"),
        ('DELETE FROM "public"."model_tags" WHERE 1', "model_tags"),
        ("REPLACE INTO evaluation_sources VALUES (1)", "evaluation_sources"),
    ],
)
def test_the_written_table_is_named_however_the_statement_spells_it(statement: str, table: str) -> None:
    from registry.db import _DML

    m = _DML.match(statement)
    assert m is not None and m.group(2) == table
