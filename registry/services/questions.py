"""Use cases on questions: bulk registration (texts encoded once) and listing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.errors import InvalidInput, QuestionConflict, UnknownQuestions
from registry.schemas import EvaluationIn, Page, QuestionIn, QuestionRead, QuestionsCreated
from registry.services.common import check_size, index_write, new_question, question_phi
from registry.services.context import Context
from registry.services.retry import retry_on_race
from registry.tables import QuestionRow


def to_question_read(row: QuestionRow) -> QuestionRead:
    return QuestionRead.model_validate(row, from_attributes=True)


@retry_on_race
def add_questions(ctx: Context, items: Sequence[QuestionIn]) -> QuestionsCreated:
    """Register questions; a key already stored with the same text is kept, with another text refused."""
    if not items:
        raise InvalidInput("no questions given")
    check_size(ctx, len(items), "questions")
    seen: set[str] = set()
    for i, q in enumerate(items):
        if q.key in seen:
            raise InvalidInput(f"questions[{i}]: key {q.key!r} appears more than once in the request")
        seen.add(q.key)
    with ctx.session_factory() as s, s.begin():
        existing = repo.get_questions_by_keys(s, [q.key for q in items])
        for q in items:
            old = existing.get(q.key)
            if old is not None and old.text != q.text:
                raise QuestionConflict(f"question key {q.key!r} is already registered with a different text")
        new_rows = [
            new_question(q.key, q.text, q.category, q.benchmark) for q in items if q.key not in existing
        ]
        if new_rows:
            repo.add_questions(s, new_rows)
            vectors = ctx.embedder.encode_queries([r.text for r in new_rows])  # (N, query_dim)
            with index_write():
                ctx.index.upsert_questions([r.id for r in new_rows], vectors)
        by_key = {r.key: r for r in new_rows} | existing
        return QuestionsCreated(
            created=len(new_rows),
            existing=len(items) - len(new_rows),
            items=[to_question_read(by_key[q.key]) for q in items],
        )


def list_questions(
    ctx: Context,
    *,
    benchmark: str | None = None,
    category: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[QuestionRead]:
    """A page of questions ordered by key."""
    with ctx.session_factory() as s:
        rows, total = repo.list_questions(
            s, benchmark=benchmark, category=category, limit=limit, offset=offset
        )
        return Page(items=[to_question_read(r) for r in rows], total=total, limit=limit, offset=offset)


def get_question_vectors(ctx: Context, keys: Sequence[str]) -> tuple[list[QuestionRead], np.ndarray]:
    """Registered questions by key and their encodings (len(keys), query_dim); unknown keys raise."""
    with ctx.session_factory() as s:
        rows = repo.get_questions_by_keys(s, keys)
        unknown = [k for k in keys if k not in rows]
        if unknown:
            raise UnknownQuestions(unknown)
        ordered = [rows[k] for k in keys]
        phi, _ = question_phi(ctx, s, [r.id for r in ordered])
        mat = (
            np.stack([phi[r.id] for r in ordered]).astype(np.float32)
            if ordered
            else np.zeros((0, ctx.embedder.query_dim), np.float32)
        )
        return [to_question_read(r) for r in ordered], mat


def resolve_evaluation_questions(
    s: Session, items: Sequence[EvaluationIn]
) -> tuple[dict[str, uuid.UUID], list[QuestionRow]]:
    """Map every evaluation's question key to its id, creating rows for unknown keys that carry text.

    Raises InvalidInput for a key repeated in the request, UnknownQuestions for unknown keys without
    text, QuestionConflict when inline text differs from the stored one. New rows are not yet added.
    """
    seen: set[str] = set()
    for i, e in enumerate(items):
        if e.question in seen:
            raise InvalidInput(
                f"evaluations[{i}]: question {e.question!r} appears more than once in the request"
            )
        seen.add(e.question)
    ids = repo.question_ids_by_keys(s, [e.question for e in items])
    # Texts are read only where the request repeats one (to detect a conflicting text).
    with_text = [e.question for e in items if e.text is not None and e.question in ids]
    stored = repo.get_questions_by_keys(s, with_text) if with_text else {}
    unknown: list[str] = []
    new_rows: list[QuestionRow] = []
    for e in items:
        if e.question in ids:
            if e.text is not None and e.text != stored[e.question].text:
                raise QuestionConflict(
                    f"question key {e.question!r} is already registered with a different text"
                )
            continue
        if e.text is None:
            unknown.append(e.question)
            continue
        if not e.text.strip():
            raise InvalidInput(f"question {e.question!r}: text must not be blank")
        row = new_question(e.question, e.text, e.category, e.benchmark)
        ids[e.question] = row.id
        new_rows.append(row)
    if unknown:
        raise UnknownQuestions(unknown)
    return ids, new_rows
