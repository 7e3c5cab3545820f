"""Fingerprint use case: judge the nearest registered models against unregistered evaluations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from registry import repositories as repo
from registry.decisions.fingerprint import EvalSet, FingerprintThresholds, Verdict, matched_distances
from registry.decisions.schemas import Basis, FingerprintMatch, FingerprintRead, FingerprintRequest
from registry.decisions.service.pool import _rows, brief
from registry.decisions.service.thresholds import ThresholdProvider, thresholds_read
from registry.services import embed_evaluations
from registry.services.common import question_phi
from registry.services.context import Context

SHORTLIST = 20  # fingerprint candidates compared on shared questions: the max(k, SHORTLIST) nearest


@dataclass(frozen=True)
class Judgement:
    """One comparison: distances, the evidence, and the verdict with the distance it rests on."""

    distance: float
    matched_distance: float | None
    shared_questions: int
    verdict: Verdict | None
    basis: Basis


def judge(
    distance: float,
    matched_distance: float | None,
    shared: int,
    global_th: FingerprintThresholds | None,
    matched_th: FingerprintThresholds | None,
) -> Judgement:
    """Verdict on the matched distance when there is one (and matched thresholds), else the global one."""
    if matched_distance is not None and matched_th is not None:
        return Judgement(distance, matched_distance, shared, matched_th.verdict(matched_distance), "matched")
    verdict = None if global_th is None else global_th.verdict(distance)
    return Judgement(distance, matched_distance, shared, verdict, "global")


VERDICT_RANK = {"same": 0, "related": 1, "different": 2, None: 3}


def _order(j: Judgement) -> tuple[int, int, float]:
    # verdict first; within a verdict matched evidence before global, then the distance used
    used = j.matched_distance if j.basis == "matched" and j.matched_distance is not None else j.distance
    return VERDICT_RANK[j.verdict], 0 if j.basis == "matched" else 1, used


def fingerprint(ctx: Context, req: FingerprintRequest, thresholds: ThresholdProvider) -> FingerprintRead:
    """Judge the nearest registered models against unregistered evaluations (nothing is written).

    Shortlist: the max(k, 20) nearest models by global embedding distance. For each candidate scored
    on at least `min_shared` of the submitted questions, both sides are embedded from their scores on
    exactly those shared questions and the verdict uses that matched distance; otherwise the global.
    """
    vec = embed_evaluations(ctx, req.evaluations)
    hits = ctx.index.search_models(vec, max(req.k, SHORTLIST), None)
    rows = _rows(ctx, [h.id for h in hits])
    hits = [h for h in hits if h.id in rows]
    got = thresholds.get(ctx)
    got_m = thresholds.get_matched(ctx)
    with ctx.session_factory() as s:
        keys = repo.question_ids_by_keys(s, [e.question for e in req.evaluations])
        mine = {keys[e.question]: float(e.score) for e in req.evaluations if e.question in keys}
        theirs = repo.model_scores(s, [h.id for h in hits])
        shared = {
            h.id: sorted(q for q, _ in theirs.get(h.id, []) if q in mine)  # canonical order: by question id
            for h in hits
        }
        need = sorted({q for h in hits if len(shared[h.id]) >= req.min_shared for q in shared[h.id]})
        phi, _ = question_phi(ctx, s, need)
    matched = [h for h in hits if len(shared[h.id]) >= req.min_shared]
    pairs: list[tuple[EvalSet, EvalSet]] = []
    for h in matched:
        qs = shared[h.id]
        x = np.stack([phi[q] for q in qs]).astype(np.float32)  # (S, query_dim)
        cand = dict(theirs[h.id])
        pairs.append(
            (
                (x, np.asarray([cand[q] for q in qs], np.float32)),
                (x, np.asarray([mine[q] for q in qs], np.float32)),
            )
        )
    md = dict(zip([h.id for h in matched], matched_distances(pairs, ctx.embedder.embed), strict=True))
    disagree = {
        h.id: float(np.mean([abs(mine[q] - float(y)) for q, y in theirs[h.id] if q in mine]))
        for h in hits
        if shared[h.id]
    }
    judged = [
        (
            h,
            judge(
                h.distance,
                None if h.id not in md else float(md[h.id]),
                len(shared[h.id]),
                None if got is None else got[0],
                None if got_m is None else got_m[0],
            ),
        )
        for h in hits
    ]
    judged.sort(key=lambda hj: _order(hj[1]))
    return FingerprintRead(
        fingerprint=ctx.embedder.fingerprint,
        n_evaluations=len(req.evaluations),
        min_shared=req.min_shared,
        candidates=len(hits),
        thresholds=None if got is None else thresholds_read(*got),
        matched_thresholds=None if got_m is None else thresholds_read(*got_m),
        matches=[
            FingerprintMatch(
                model=brief(rows[h.id]),
                distance=j.distance,
                matched_distance=j.matched_distance,
                shared_questions=j.shared_questions,
                score_disagreement=disagree.get(h.id),
                verdict=j.verdict,
                verdict_basis=j.basis,
            )
            for h, j in judged[: req.k]
        ],
    )
