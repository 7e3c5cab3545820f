"""Duplicates use case: registered pairs judged `same`, on matched distances where they share questions."""

from __future__ import annotations

import uuid

import numpy as np

from registry import repositories as repo
from registry.decisions.errors import InvalidDecisionInput
from registry.decisions.evidence import shared_evidence
from registry.decisions.fingerprint import EvalSet, matched_distances, pair_seed, shared_sample
from registry.decisions.portfolio import pairwise_distances
from registry.decisions.schemas import DuplicatePair, DuplicatesRead
from registry.decisions.service.fingerprint import Judgement, _order, evidence_read, judge
from registry.decisions.service.pool import PoolRow, brief, load_pool, n_evaluations
from registry.decisions.service.provenance import THRESHOLDS, finish, provenance_pool, restricting
from registry.decisions.service.thresholds import ThresholdProvider, thresholds_read, tolerance_read
from registry.schemas import EvaluationFilter
from registry.services.common import question_phi
from registry.services.context import Context
from registry.tables import ModelRow


def duplicates(
    ctx: Context,
    thresholds: ThresholdProvider,
    *,
    limit: int = 1000,
    min_shared: int = 1,
    neighbours: int = 3,
    max_shared: int = 512,
    provenance: EvaluationFilter | None = None,
) -> DuplicatesRead:
    """Registered pairs judged `same`, on matched distances over their shared questions where they
    share at least `min_shared` (at most `max_shared`, a seeded sample, are embedded), else on the
    global distance.

    Work is bounded: only pairs closer than the global `related` threshold, plus each model's
    `neighbours` nearest, are compared on shared questions. `provenance`: only models with evaluations
    of that provenance, re-embedded from those, compared on their shared questions of that provenance.
    """
    prov = restricting(provenance)
    got = thresholds.get(ctx)
    if got is None:
        raise InvalidDecisionInput(
            "no fingerprint calibration for this encoder and too few evaluations in the registry "
            "to calibrate one (need two models with at least 16 evaluations)"
        )
    th, source = got
    got_m = thresholds.get_matched(ctx)
    pool, pv = (load_pool(ctx, None), None) if prov is None else provenance_pool(ctx, None, prov)
    cand: dict[tuple[int, int], float] = {}
    block = 1024
    for start in range(0, len(pool.ids), block):
        d = pairwise_distances(pool.vectors[start : start + block], pool.vectors)  # (b, N)
        for r in range(d.shape[0]):
            i = start + r
            near = np.argpartition(d[r], min(neighbours, d.shape[1] - 1))[: neighbours + 1]  # self + nearest
            for c in {*np.flatnonzero(d[r] < th.related).tolist(), *near.tolist()}:
                if c != i:
                    cand[(min(i, c), max(i, c))] = float(d[r, c])
    involved = sorted({x for pair in cand for x in pair})
    pairs: list[tuple[EvalSet, EvalSet]] = []
    shared_n: dict[tuple[int, int], int] = {}
    matched_keys: list[tuple[int, int]] = []
    with ctx.session_factory() as s:
        scores = repo.model_scores(s, [pool.ids[x] for x in involved], prov)
        chosen: dict[tuple[int, int], list[uuid.UUID]] = {}
        for i, j in cand:
            a, b = dict(scores.get(pool.ids[i], [])), dict(scores.get(pool.ids[j], []))
            qs = sorted(a.keys() & b.keys())
            shared_n[(i, j)] = len(qs)
            if len(qs) >= min_shared:
                keep = shared_sample(np.arange(len(qs)), max_shared, pair_seed(pool.ids[i], pool.ids[j]))
                chosen[(i, j)] = [qs[k] for k in keep]
        phi, _ = question_phi(ctx, s, sorted({q for qs in chosen.values() for q in qs}))
        for (i, j), qs in chosen.items():
            a, b = dict(scores[pool.ids[i]]), dict(scores[pool.ids[j]])
            x = np.stack([phi[q] for q in qs]).astype(np.float32)  # (S, query_dim)
            pairs.append(
                (
                    (x, np.asarray([a[q] for q in qs], np.float32)),
                    (x, np.asarray([b[q] for q in qs], np.float32)),
                )
            )
            matched_keys.append((i, j))
    md = dict(zip(matched_keys, matched_distances(pairs, ctx.embedder.embed), strict=True))
    tol, _ = thresholds.get_tolerance(ctx)
    evidence = {
        k: shared_evidence(a[1], b[1], tol.alpha) for k, (a, b) in zip(matched_keys, pairs, strict=True)
    }
    disagree = {k: float(np.mean(np.abs(a[1] - b[1]))) for k, (a, b) in zip(matched_keys, pairs, strict=True)}
    found: list[tuple[tuple[int, int, float], int, int, Judgement]] = []
    for (i, j), dist in cand.items():
        m = md.get((i, j))
        jd = judge(
            dist,
            None if m is None else float(m),
            shared_n[(i, j)],
            th,
            evidence.get((i, j)),
            tol,
            min(_evaluations(pool.rows[i]), _evaluations(pool.rows[j]))
            if pv is None
            else min(pv.counts[pool.ids[i]], pv.counts[pool.ids[j]]),
        )  # no candidate cap: the two ARE each other's nearest neighbours when they are duplicates
        if jd.verdict == "same":
            found.append((_order(jd), i, j, jd))
    found.sort(key=lambda f: f[0])
    read = DuplicatesRead(
        fingerprint=ctx.embedder.fingerprint,
        thresholds=thresholds_read(th, source),
        matched_thresholds=None if got_m is None else thresholds_read(*got_m),
        tolerance=tolerance_read(tol),
        min_shared=min_shared,
        pairs_compared=len(cand),
        pairs=[
            DuplicatePair(
                a=brief(pool.rows[i]),
                b=brief(pool.rows[j]),
                distance=jd.distance,
                matched_distance=jd.matched_distance,
                shared_questions=jd.shared_questions,
                score_disagreement=disagree.get((i, j)),
                verdict_basis=jd.basis,
                evidence=None if jd.evidence is None else evidence_read(jd.evidence),
                why=jd.why,
            )
            for _, i, j, jd in found[:limit]
        ],
    )
    return finish(read, pv, [THRESHOLDS])


def _evaluations(row: ModelRow | PoolRow) -> int:
    return n_evaluations(row) or 0
