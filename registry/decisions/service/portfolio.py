"""Portfolio use case: choose k models (or a budget's worth) covering the filtered pool."""

from __future__ import annotations

import numpy as np

from registry.decisions.errors import EmptyCandidatesError, InvalidDecisionInput
from registry.decisions.portfolio import select_portfolio
from registry.decisions.routing import predicted_routing_accuracy
from registry.decisions.schemas import CoverageRead, PortfolioRead, PortfolioRequest
from registry.decisions.service.pool import (
    brief,
    load_pool,
    price_of,
    reference_queries,
    require_models,
    to_filter,
)
from registry.decisions.service.provenance import REFERENCE, finish, provenance_pool, restricting
from registry.services.context import Context


def portfolio(ctx: Context, req: PortfolioRequest) -> PortfolioRead:
    """Choose a portfolio from the filtered pool and estimate its routing accuracy on reference queries."""
    if req.k is None and req.param_budget is None and req.price_budget is None:
        raise InvalidDecisionInput("give k, param_budget or price_budget")
    if req.param_budget is not None and req.price_budget is not None:
        raise InvalidDecisionInput("give param_budget or price_budget, not both")
    require_models(ctx, [*req.include, *req.exclude])
    prov = restricting(req.provenance)
    pv = None
    if prov is None:
        pool = load_pool(ctx, to_filter(req.filters))
    else:  # every model re-embedded from its evaluations of this provenance only
        pool, pv = provenance_pool(ctx, to_filter(req.filters), prov)
    if not pool.ids:
        raise EmptyCandidatesError(
            "no embedded model matches the portfolio filters"
            + ("" if prov is None else " and has evaluations of this provenance")
        )
    at = pool.index_of()
    outside = [str(m) for m in req.include if m not in at]
    if outside:
        raise InvalidDecisionInput(
            f"included model(s) {', '.join(outside)} do not match the filters or have no embedding"
        )
    weights: np.ndarray | None = None
    budget = req.param_budget if req.param_budget is not None else req.price_budget
    if req.param_budget is not None:
        weights = np.array(
            [np.nan if r.params_b is None else r.params_b for r in pool.rows], dtype=np.float64
        )
    elif req.price_budget is not None:
        weights = np.array(
            [np.nan if price_of(r) is None else price_of(r) for r in pool.rows], dtype=np.float64
        )
    port = select_portfolio(
        ctx.embedder.predictor_space(pool.vectors),  # where routing reads (ports.Embedder.predictor_space)
        method=req.method,
        k=req.k,
        budget=budget,
        weights=weights,
        include=[at[m] for m in req.include],
        exclude=[at[m] for m in req.exclude if m in at],
        seed=req.seed,
    )
    phi, _ = reference_queries(ctx, req.reference)
    acc = full = None
    if len(phi):
        p = ctx.embedder.predict(pool.vectors, phi)  # (Q, N)
        acc = predicted_routing_accuracy(p, port.chosen)
        full = predicted_routing_accuracy(p)
    chosen_rows = [pool.rows[i] for i in port.chosen]
    params = [r.params_b for r in chosen_rows]
    prices = [price_of(r) for r in chosen_rows]
    read = PortfolioRead(
        method=port.method,
        fingerprint=ctx.embedder.fingerprint,
        pool_size=len(pool.ids),
        chosen=[brief(r) for r in chosen_rows],
        left_out=[
            CoverageRead(
                model=brief(pool.rows[i]),
                representative=brief(pool.rows[int(port.representative[i])]),
                distance=float(port.distance[i]),
            )
            for i in port.left_out
        ],
        coverage_radius=port.radius,
        mean_distance=port.mean_distance,
        total_params_b=None if any(x is None for x in params) else float(sum(x or 0.0 for x in params)),
        total_price=None if any(x is None for x in prices) else float(sum(x or 0.0 for x in prices)),
        reference_queries=len(phi),
        predicted_accuracy=acc,
        predicted_accuracy_full_pool=full,
    )
    return finish(read, pv, [REFERENCE])
