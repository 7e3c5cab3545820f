"""Write use cases that lose a race on a unique key are run again.

Two requests that register the same new question (or the same model name) at the same moment both pass
their "does it exist?" check; on PostgreSQL the second insert then fails on the unique constraint. A use
case is one transaction that wrote nothing when it failed (the vector write comes after the flush that
fails), so running it again is safe: the second run sees the other request's rows and either uses them or
answers with the proper domain error (NameTaken, QuestionConflict).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError

from registry.errors import Conflict

P = ParamSpec("P")
R = TypeVar("R")
ATTEMPTS = 3

log = logging.getLogger(__name__)


class ConcurrentWrite(Conflict):
    """Concurrent writes kept colliding on the same keys."""


def retry_on_race(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` again (up to ATTEMPTS times) when its transaction hit a unique-key race."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except IntegrityError as exc:
                if attempt == ATTEMPTS:
                    raise ConcurrentWrite(
                        f"{fn.__name__}: concurrent requests kept writing the same keys; send it again"
                    ) from exc
                log.info("%s lost a unique-key race (attempt %d), running it again", fn.__name__, attempt)
        raise AssertionError("unreachable")

    return wrapper
