"""What a cached answer is keyed on: the registry's change counters, read after the caller's key is checked.

An answer cache in front of the services (`api.answers`) may give back a read's earlier answer only while
nothing it depends on has changed. `registry_state` counters change with every committed write that a
read can depend on (scores, model metadata, questions; `registry.db`), in the same transaction, in every
process; so an answer stored under counters read before it was computed is the answer any worker would
compute while the counters stay the same.
"""

from __future__ import annotations

from registry import repositories as repo
from registry.errors import Unauthenticated
from registry.schemas import Scope
from registry.services.context import SessionSource
from registry.services.keys import authenticate_in


def answer_state(
    ctx: SessionSource, key: str | None, scope: Scope, *, open_reads: bool
) -> tuple[int, int, int] | None:
    """The (scores, metadata, questions) change counters, if `key` grants `scope` (or none is needed:
    reads are open), in one session; raises `Unauthenticated`/`Forbidden` as `authenticate` does; None
    where the counters are missing (nothing may be cached then)."""
    with ctx.session_factory() as s:
        if key:
            authenticate_in(s, key, scope)
        elif not (scope == "read" and open_reads):
            raise Unauthenticated("missing API key: send `Authorization: Bearer <key>`")
        return repo.change_counters(s)
