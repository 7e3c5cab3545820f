"""The hot paths' plain-SQL model read (`repositories.model_records`) gives what the ORM load gives."""

from __future__ import annotations

import uuid

from registry import repositories as repo
from registry import services
from registry.schemas import EvaluationIn, ModelCreate, QuestionIn
from registry.services import Context
from registry.services.common import to_model_read


def test_model_records_read_as_the_orm_does(ctx: Context) -> None:
    services.add_questions(ctx, [QuestionIn(key=f"q{i}", text=f"What is {i} squared?") for i in range(6)])
    rich = services.register_model(
        ctx,
        ModelCreate(
            name="rich",
            provider="acme",
            params_b=7.5,
            context_window=8192,
            input_price=0.2,
            license="apache-2.0",
            tags=["zeta", "alpha", "mid"],
            metadata={"endpoint": "https://example.test/v1", "nested": {"k": [1, 2]}},
            evaluations=[EvaluationIn(question=f"q{i}", score=float(i % 2)) for i in range(6)],
        ),
    ).id
    bare = services.register_model(ctx, ModelCreate(name="bare")).id  # no tags, no embedding
    missing = uuid.uuid4()
    with ctx.session_factory() as s:
        records = repo.model_records(s, [rich, bare, missing])
        orm = repo.get_models(s, [rich, bare])
        assert set(records) == {rich, bare}  # an unknown id (an orphan vector's) has no record
        for m in (rich, bare):
            assert to_model_read(records[m]) == to_model_read(orm[m])
    assert records[rich].tags == ["alpha", "mid", "zeta"] and records[bare].embedding is None
