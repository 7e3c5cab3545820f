"""Route use case: pick the best available model per query, optionally within a portfolio."""

from __future__ import annotations

import uuid

import numpy as np

from registry.decisions.errors import EmptyCandidatesError, InvalidDecisionInput
from registry.decisions.portfolio import select_portfolio
from registry.decisions.routing import route
from registry.decisions.schemas import (
    FallbackRead,
    PortfolioSpec,
    QueryRouteRead,
    RankedRead,
    RouteRead,
    RouteRequest,
)
from registry.decisions.service.outcomes import record_decisions
from registry.decisions.service.pool import (
    Pool,
    brief,
    check_queries,
    load_pool,
    pool_subset,
    require_pool_rows,
    require_vectors,
    to_filter,
)
from registry.decisions.service.provenance import (
    ProvenanceVectors,
    finish,
    provenance_pool,
    provenance_vectors,
    restricting,
)
from registry.ports import ModelFilter
from registry.schemas import EvaluationFilter
from registry.services.context import Context


def route_queries(ctx: Context, req: RouteRequest) -> RouteRead:
    """Score every (query, candidate) in one predictor pass and pick the best available model per query
    (`req.provenance`: candidates re-embedded from evaluations of that provenance only)."""
    check_queries(req.queries)
    prov = restricting(req.provenance)
    pv: ProvenanceVectors | None = None
    if req.candidates is not None and req.portfolio is not None:
        raise InvalidDecisionInput("give candidates or portfolio, not both")
    if req.candidates is not None:
        if not req.candidates:
            raise EmptyCandidatesError("candidates is an empty list: name at least one model")
        ids = list(dict.fromkeys(req.candidates))
        cached = pool_subset(ctx, ids) if prov is None else None  # all embedded and registered: no reads
        if cached is not None:
            pool = cached
        else:
            rows = require_pool_rows(ctx, ids, "candidate")
            if prov is None:
                vecs = require_vectors(ctx, ids)
            else:
                pv = provenance_vectors(ctx, prov, must=ids, pool=False)
                vecs = pv.as_dict()
            pool = Pool(ids=ids, vectors=np.stack([vecs[i] for i in ids]), rows=[rows[i] for i in ids])
    elif req.portfolio is not None:
        pool, pv = _portfolio_pool(ctx, req.portfolio, prov)
    else:
        pool, pv = (load_pool(ctx, None), None) if prov is None else provenance_pool(ctx, None, prov)
        if not pool.ids:
            raise EmptyCandidatesError(
                "no embedded model is registered: nothing to route to"
                if prov is None
                else "no model has evaluations of this provenance: nothing to route to"
            )
    phi = ctx.embedder.encode_queries(req.queries, persist=False)  # (Q, query_dim): traffic, not questions
    p = ctx.embedder.predict(pool.vectors, phi)  # (Q, M)
    avail = pool.active()
    if not avail.any():
        raise EmptyCandidatesError("none of the candidate models is active")
    decisions = route(
        p,
        prices=pool.prices(),
        cost_weight=req.cost_weight,
        top_k=req.top_k,
        available=avail,
    )
    active_ids: tuple[uuid.UUID, ...] | None = None  # read only when a preferred model is down
    nearest: dict[int, list[FallbackRead]] = {}
    out = []
    for qi, d in enumerate(decisions):
        fb: list[FallbackRead] = []
        if not avail[d.preferred] and req.fallbacks > 0:
            if d.preferred not in nearest:
                if active_ids is None:
                    active_ids = tuple(pool.ids[i] for i in np.flatnonzero(avail))
                flt = ModelFilter(statuses=("active",), include_ids=active_ids)
                hits = (
                    ctx.index.search_models(pool.vectors[d.preferred], req.fallbacks, flt)
                    if pv is None
                    else pv.nearest(pool.vectors[d.preferred], req.fallbacks, among=active_ids)
                )
                at = pool.index_of()
                nearest[d.preferred] = [
                    FallbackRead(
                        model=brief(pool.rows[at[h.id]]), distance=h.distance, predicted_agreement=None
                    )
                    for h in hits
                    if h.id in at
                ]
            fb = nearest[d.preferred]
        out.append(
            QueryRouteRead(
                query=qi,
                ranked=[
                    RankedRead(
                        model=brief(pool.rows[c.index]),
                        p_correct=c.p_correct,
                        score=c.score,
                        available=c.available,
                    )
                    for c in d.ranked
                ],
                chosen=brief(pool.rows[d.chosen]),
                preferred=brief(pool.rows[d.preferred]),
                fallbacks=fb,
            )
        )
    read = RouteRead(fingerprint=ctx.embedder.fingerprint, candidates=len(pool.ids), routes=out)
    return record_decisions(ctx, req, finish(read, pv))  # decision ids for outcomes


def _portfolio_pool(
    ctx: Context, spec: PortfolioSpec, prov: EvaluationFilter | None
) -> tuple[Pool, ProvenanceVectors | None]:
    pool, pv = (
        (load_pool(ctx, to_filter(spec.filters)), None)
        if prov is None
        else provenance_pool(ctx, to_filter(spec.filters), prov)
    )
    if not pool.ids:
        raise EmptyCandidatesError("no embedded model matches the portfolio filters")
    if spec.k is None and spec.param_budget is None and spec.price_budget is None:
        raise InvalidDecisionInput("portfolio: give k, param_budget or price_budget")
    weights = None
    budget = spec.param_budget if spec.param_budget is not None else spec.price_budget
    if spec.param_budget is not None:
        weights = np.array([np.nan if r.params_b is None else r.params_b for r in pool.rows])
    elif spec.price_budget is not None:
        weights = pool.prices().copy()
    port = select_portfolio(
        ctx.embedder.predictor_space(pool.vectors),
        method=spec.method,
        k=spec.k,
        budget=budget,
        weights=weights,
    )
    return pool.take(list(port.chosen)), pv
