"""Use cases. Each public function is one use case with at most one commit.

Write order everywhere: SQL rows + flush, then vector upserts, then commit; a failing vector write
raises `IndexUnavailable` inside the transaction, so nothing is committed.
"""

from registry.services.answers import answer_state
from registry.services.common import Progress
from registry.services.context import Context, Sessions, SessionSource
from registry.services.keys import authenticate, create_api_key, list_api_keys, revoke_api_key
from registry.services.maintenance import (
    EvalTable,
    import_batch,
    import_source,
    readiness,
    reindex,
    stale_models,
)
from registry.services.models import (
    add_evaluations,
    delete_model,
    embed_evaluations,
    get_model,
    get_models,
    list_evaluation_sources,
    list_evaluations,
    list_models,
    model_provenance,
    nearest_to_vector,
    register_model,
    similar_models,
    update_model,
)
from registry.services.provenance import embed_model_with_provenance
from registry.services.questions import add_questions, get_question_vectors, list_questions

__all__ = [
    "Context",
    "EvalTable",
    "Progress",
    "SessionSource",
    "Sessions",
    "add_evaluations",
    "add_questions",
    "answer_state",
    "authenticate",
    "create_api_key",
    "delete_model",
    "embed_evaluations",
    "embed_model_with_provenance",
    "get_model",
    "get_models",
    "get_question_vectors",
    "import_batch",
    "import_source",
    "list_api_keys",
    "list_evaluation_sources",
    "list_evaluations",
    "list_models",
    "list_questions",
    "model_provenance",
    "nearest_to_vector",
    "readiness",
    "register_model",
    "reindex",
    "revoke_api_key",
    "similar_models",
    "stale_models",
    "update_model",
]
