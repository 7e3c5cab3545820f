"""/v1/questions: bulk registration and listing."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ContainerDep, Limit, Offset, ReadAuth, WriteAuth
from registry import services
from registry.schemas import Label, Page, QuestionRead, QuestionsCreate, QuestionsCreated

router = APIRouter(prefix="/v1/questions", tags=["questions"])


@router.post("", status_code=201)
def create_questions(body: QuestionsCreate, container: ContainerDep, _: WriteAuth) -> QuestionsCreated:
    """Register questions in bulk; each new text is encoded once. Known keys with the same text are kept."""
    return services.add_questions(container, body.questions)


@router.get("")
def list_questions(
    container: ContainerDep,
    _: ReadAuth,
    benchmark: Label | None = None,
    category: Label | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[QuestionRead]:
    """Questions ordered by key."""
    return services.list_questions(
        container, benchmark=benchmark, category=category, limit=limit, offset=offset
    )
