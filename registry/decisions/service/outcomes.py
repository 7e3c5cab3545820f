"""Route outcomes: every routed query gets a decision id; an outcome reported for it becomes an evaluation.

`record_decisions` (called by `route_queries`) stores one `route_decisions` row per routed query in one
bulk insert: the query's SHA-256, the chosen model, the encoder and the predicted P(correct). When
the database refuses the write (SQLite locked by a long import past its busy timeout) the routes are
answered without decision ids. The query
text is kept only when the request asks (`keep_queries`): production prompts may hold personal data,
and by default the registry keeps nothing of them but the hash.

`record_outcome` stores the reported score as an evaluation of the chosen model (source
`route-outcome`, one provenance record with tool `route-outcome`), on the question keyed
`route:<sha256 of the query>` (text from the request, checked against the hash, or the kept text), and
re-embeds the model as `add_evaluations` does, in the same transaction that marks the decision
answered. Idempotent per decision: the same score again changes nothing; another score is a conflict.
Bounded: decisions older than the outcome window (`LOCUS_ROUTE_OUTCOME_DAYS`, default 7) refuse
outcomes and are deleted, at most once a minute per process, by the route requests themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
import uuid

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry import repositories_lifecycle as lrepo
from registry.decisions.errors import DecisionError
from registry.decisions.schemas import OutcomeRead, OutcomeRequest, RouteRead, RouteRequest
from registry.errors import Conflict, InvalidInput, NotFound
from registry.schemas import EvaluationIn
from registry.services.context import Context
from registry.services.models import store_evaluations
from registry.services.retry import retry_on_race
from registry.tables import EvaluationSourceRow, utcnow

log = logging.getLogger(__name__)

SOURCE = "route-outcome"
QUESTION_PREFIX = "route:"
RETENTION_DAYS = 7
PRUNE_EVERY_S = 60.0

_pruned_at = 0.0
_prune_lock = threading.Lock()


class UnknownDecision(DecisionError, NotFound):
    """No routing decision has this id (never made, or deleted after the outcome window)."""


class OutcomeConflict(DecisionError, Conflict):
    """An outcome with another score was already recorded for this decision."""


class OutcomeExpired(DecisionError, Conflict):
    """The decision is older than the outcome window."""


class OutcomeTextMismatch(DecisionError, InvalidInput):
    """The question text sent is not the routed query, or it is needed and was not sent."""


def query_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def retention(ctx: Context) -> dt.timedelta:
    """The outcome window: the app's `route_outcome_days` setting (its Container carries settings), else
    RETENTION_DAYS."""
    days = getattr(getattr(ctx, "settings", None), "route_outcome_days", None)
    return dt.timedelta(days=RETENTION_DAYS if days is None else int(days))


def record_decisions(ctx: Context, req: RouteRequest, read: RouteRead) -> RouteRead:
    """Store one decision per routed query (one bulk insert, one commit) and put its id on the route."""
    now = utcnow()
    rows = []
    for r in read.routes:
        did = uuid.uuid4()
        text = req.queries[r.query]
        predicted = next((c.p_correct for c in r.ranked if c.model.id == r.chosen.id), None)
        rows.append(
            {
                "id": did,
                "query_sha256": query_sha256(text),
                "query_text": text if req.keep_queries else None,
                "model_id": r.chosen.id,
                "fingerprint": read.fingerprint,
                "predicted": predicted,
                "created_at": now,
            }
        )
        r.decision_id = did
    try:
        with ctx.session_factory() as s, s.begin():
            lrepo.add_route_decisions(s, rows)
            _maybe_prune(s, now - retention(ctx))
    except OperationalError:
        # The database refused the write (SQLite locked past its busy timeout by a long import): the
        # routes are still right, so answer them, without decision ids, rather than fail the request.
        log.warning(
            "routing decisions not recorded (database busy): %d routes without decision ids", len(rows)
        )
        for r in read.routes:
            r.decision_id = None
    return read


def _maybe_prune(s: Session, before: dt.datetime) -> None:
    """Delete expired decisions, at most once per PRUNE_EVERY_S in this process (cheap, index range)."""
    global _pruned_at
    with _prune_lock:
        if time.monotonic() - _pruned_at < PRUNE_EVERY_S:
            return
        _pruned_at = time.monotonic()
    lrepo.prune_route_decisions(s, before)


def _outcome_source(s: Session) -> uuid.UUID:
    """The provenance record every route outcome links to (created on first use)."""
    tool, task = SOURCE, "production routing"
    sha = hashlib.sha256(SOURCE.encode()).hexdigest()
    fingerprint = hashlib.sha256(f"{tool}\0{task}\0{sha}".encode()).hexdigest()
    got = repo.get_sources_by_fingerprints(s, [fingerprint]).get(fingerprint)
    if got is None:
        got = EvaluationSourceRow(
            id=uuid.uuid4(),
            fingerprint=fingerprint,
            tool=tool,
            task=task,
            generation={},
            file_sha256=sha,
            created_at=utcnow(),
        )
        repo.add_sources(s, [got])
    return got.id


@retry_on_race
def record_outcome(ctx: Context, req: OutcomeRequest) -> OutcomeRead:
    """Store the outcome of a routing decision as an evaluation of the chosen model (see the module doc)."""
    window = retention(ctx)
    with ctx.session_factory() as s, s.begin():
        d = lrepo.get_route_decision(s, req.decision_id, lock=True)
        if d is None:
            raise UnknownDecision(
                f"routing decision {req.decision_id} is unknown: never made, or older than the "
                f"{window.days}-day outcome window (expired decisions are deleted)"
            )
        key = QUESTION_PREFIX + d.query_sha256
        if d.outcome_score is not None:
            if abs(d.outcome_score - req.score) > 1e-9:
                raise OutcomeConflict(
                    f"decision {d.id} already has the outcome {d.outcome_score:g}; an outcome is reported "
                    f"once (got {req.score:g})"
                )
            assert d.outcome_at is not None and d.model_id is not None  # set together with the score
            return _read(d.id, d.model_id, key, req.score, False, d.outcome_at, None)
        now = utcnow()
        if now - d.created_at > window:
            raise OutcomeExpired(
                f"decision {d.id} was made {(now - d.created_at).days} days ago; outcomes are accepted for "
                f"{window.days} days (LOCUS_ROUTE_OUTCOME_DAYS)"
            )
        if d.model_id is None:
            raise UnknownDecision(f"the model decision {d.id} chose has been deleted")
        text = req.question_text
        if text is not None and query_sha256(text) != d.query_sha256:
            raise OutcomeTextMismatch(
                f"question_text is not the query of decision {d.id} (its SHA-256 differs): send the text "
                "exactly as it was routed"
            )
        text = text or d.query_text
        if text is None:
            raise OutcomeTextMismatch(
                f"decision {d.id} kept only the query's SHA-256: send question_text (or route with "
                "keep_queries=true)"
            )
        model = repo.get_model(s, d.model_id)
        if model is None:
            raise UnknownDecision(f"the model decision {d.id} chose has been deleted")
        item = EvaluationIn(question=key, score=req.score, source=SOURCE, text=text, benchmark=SOURCE)
        read = store_evaluations(
            ctx, s, model, [item], new_model=False, reason="outcome", source_id=_outcome_source(s)
        )
        d.outcome_score = req.score
        d.outcome_at = now
        s.flush()
        n = None if read.embedding is None else read.embedding.n_evaluations
        return _read(d.id, d.model_id, key, req.score, True, now, n)


def _read(
    decision: uuid.UUID,
    model: uuid.UUID,
    key: str,
    score: float,
    created: bool,
    at: dt.datetime,
    n: int | None,
) -> OutcomeRead:
    return OutcomeRead(
        decision_id=decision,
        model_id=model,
        question=key,
        score=score,
        created=created,
        outcome_at=at,
        n_evaluations=n,
    )
