"""Domain errors. They carry no HTTP: `api.errors` maps each class (by inheritance) to a status code.

    RegistryError
    ├── InvalidInput            the request is well-formed but its content is wrong (-> 422)
    │   └── UnknownQuestions    evaluations name question keys that are not registered
    ├── NotFound                an id or key does not exist (-> 404)
    ├── Conflict                the request contradicts stored state (-> 409)
    │   ├── NameTaken           another model already has this name
    │   ├── QuestionConflict    a question key is registered with a different text
    │   └── EmbeddingMissing    the model has no embedding yet (no evaluations, or reindex needed)
    ├── PayloadTooLarge         too many items or bytes in one request (-> 413)
    ├── Unauthenticated         no or unknown API key (-> 401)
    ├── Forbidden               the key lacks the needed scope (-> 403)
    └── IndexUnavailable        the vector index failed; nothing was written (-> 503)

Every message names the offending item so a client knows what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(RegistryError):
    """The content of a request is invalid (bad score, duplicate key, empty list, ...)."""


class UnknownQuestions(InvalidInput):
    """Evaluations reference question keys that are not registered (and carry no text)."""

    def __init__(self, keys: Sequence[str]) -> None:
        shown = ", ".join(repr(k) for k in list(keys)[:10])
        more = f" (and {len(keys) - 10} more)" if len(keys) > 10 else ""
        super().__init__(
            f"unknown question key(s) {shown}{more}: register them with POST /v1/questions "
            "or give their text inline"
        )
        self.keys = list(keys)


class NotFound(RegistryError):
    """An id or key does not exist."""


class Conflict(RegistryError):
    """The request contradicts what is stored."""


class NameTaken(Conflict):
    """A model with this name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a model named {name!r} already exists")
        self.name = name


class QuestionConflict(Conflict):
    """A question key is already registered with a different text."""


class EmbeddingMissing(Conflict):
    """The model has no embedding under the current encoder (no evaluations, or a reindex is due)."""


class PayloadTooLarge(RegistryError):
    """Too many items (or bytes) in one request."""


class Unauthenticated(RegistryError):
    """No API key, or an unknown or revoked one."""


class Forbidden(RegistryError):
    """The API key lacks the scope the operation needs."""


class IndexUnavailable(RegistryError):
    """The vector index failed; the SQL change was rolled back."""


class JobCancelled(RegistryError):
    """Raised inside a job's code when its cancellation was requested (the runner marks it cancelled)."""
