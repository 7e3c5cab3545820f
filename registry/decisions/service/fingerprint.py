"""Fingerprint use case: judge the nearest registered models against unregistered evaluations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import numpy as np

from registry import repositories as repo
from registry.decisions.evidence import (
    SharedEvidence,
    Tolerance,
    candidate_cap,
    closer_than,
    questions_needed,
    shared_evidence,
)
from registry.decisions.evidence import verdict as evidence_verdict
from registry.decisions.fingerprint import EvalSet, FingerprintThresholds, matched_distances
from registry.decisions.schemas import (
    Basis,
    DecisionRead,
    EvidenceRead,
    FingerprintMatch,
    FingerprintRead,
    FingerprintRequest,
    VerdictName,
)
from registry.decisions.service.pool import PoolRow, _rows, brief
from registry.decisions.service.provenance import THRESHOLDS, finish, provenance_vectors, restricting
from registry.decisions.service.thresholds import ThresholdProvider, thresholds_read, tolerance_read
from registry.services import embed_evaluations
from registry.services.common import question_phi
from registry.services.context import Context
from registry.services.probes import probe_set

Verdict = VerdictName
SHORTLIST = 20  # fingerprint candidates compared on shared questions: the max(k, SHORTLIST) nearest


@dataclass(frozen=True)
class Judgement:
    """One comparison: distances, the evidence, and the verdict with what it rests on."""

    distance: float
    matched_distance: float | None
    shared_questions: int
    verdict: Verdict | None
    basis: Basis
    evidence: SharedEvidence | None = None
    why: str = ""


def judge(
    distance: float,
    matched_distance: float | None,
    shared: int,
    global_th: FingerprintThresholds | None,
    evidence: SharedEvidence | None = None,
    tolerance: Tolerance | None = None,
    n_evaluations: int | None = None,
    cap: float | None = None,
) -> Judgement:
    """Verdict on the shared-question scores when there are any (`evidence`: the test is honest at every
    sample size), else on the embedding distance, which never says `same` on its own."""
    if evidence is not None and tolerance is not None:
        v = evidence_verdict(evidence, tolerance, cap)
        same = tolerance.same if cap is None else min(tolerance.same, cap)
        why = (
            f"disagrees on {evidence.disagreements:g} of {evidence.shared} shared questions "
            f"(rate {evidence.rate:.3f}, {1 - tolerance.alpha:.0%} bounds {evidence.lower:.3f}-"
            f"{evidence.upper:.3f}); same needs the upper bound below {same:.3f}"
            + ("" if cap is None or cap >= tolerance.same else ", half its nearest registered neighbour's")
        )
        return Judgement(distance, matched_distance, shared, v, "matched", evidence, why)
    if global_th is None:
        return Judgement(distance, matched_distance, shared, None, "global", why="no calibration yet")
    verdict: Verdict = global_th.verdict(distance)
    why = (
        f"embedding distance {distance:.3f} (same-model range below {global_th.same:.3f}, related below "
        f"{global_th.related:.3f}, calibrated on disjoint samples of {global_th.n_evaluations})"
    )
    if verdict == "same":
        # From different questions, samples of one model and of distinct models overlap (the geometry
        # benchmark's same-model TPR at 1% FPR): the embedding alone cannot bound a false `same`.
        verdict = "undetermined"
        why += (
            "; within the same-model range, but an embedding of different questions cannot bound a false "
            "`same`: score the probe questions to decide"
        )
        if n_evaluations is not None and n_evaluations < global_th.n_evaluations:
            why += f" ({n_evaluations} evaluations are fewer than the calibrated {global_th.n_evaluations})"
    return Judgement(distance, matched_distance, shared, verdict, "global", why=why)


VERDICT_RANK = {"same": 0, "related": 1, "undetermined": 2, "different": 3, None: 4}


def _order(j: Judgement) -> tuple[int, int, float]:
    # verdict first; within a verdict matched evidence before global, then the distance used
    used = j.evidence.rate if j.evidence is not None else j.distance
    return VERDICT_RANK[j.verdict], 0 if j.basis == "matched" else 1, used


def resolve_ambiguity(
    judged: list[tuple[uuid.UUID, Judgement]],
    mine: dict[uuid.UUID, float],
    theirs: dict[uuid.UUID, dict[uuid.UUID, float]],
    alpha: float,
) -> list[tuple[uuid.UUID, Judgement]]:
    """At most one `same`: with several, the closest keeps it only if, against each other one, the
    submission agrees with it significantly more on the questions where the two differ (sign test);
    otherwise every one of them becomes `undetermined`."""
    same = [(m, j) for m, j in judged if j.verdict == "same"]
    if len(same) < 2:
        return judged
    same.sort(key=lambda mj: _order(mj[1]))
    best, _ = same[0]
    separated = True
    for other, _ in same[1:]:
        qs = sorted(theirs[best].keys() & theirs[other].keys() & mine.keys())
        a = np.asarray([mine[q] for q in qs])
        x = np.asarray([theirs[best][q] for q in qs])
        y = np.asarray([theirs[other][q] for q in qs])
        separated = separated and closer_than(a, x, y, alpha)
    names = len(same)
    out = []
    for m, j in judged:
        if j.verdict == "same" and (m != best or not separated):
            j = replace(
                j,
                verdict="undetermined",
                why=j.why + f"; {names} registered models pass the same test and the shared questions "
                "do not tell them apart",
            )
        out.append((m, j))
    return out


def fingerprint(ctx: Context, req: FingerprintRequest, thresholds: ThresholdProvider) -> FingerprintRead:
    """Judge the nearest registered models against unregistered evaluations (nothing is written).

    Shortlist: the max(k, 20) nearest models by global embedding distance. A candidate scored on at
    least `min_shared` of the submitted questions is judged by a test on the scores of those shared
    questions (`registry.decisions.evidence`, with a stated false-positive bound); the others by the
    embedding distance, whose `same` needs at least the calibrated sample size. At most one `same`
    survives; the response's `decision` says which questions would settle an `undetermined`.
    """
    vec = embed_evaluations(ctx, req.evaluations)
    prov = restricting(req.provenance)
    pv = None if prov is None else provenance_vectors(ctx, prov)  # re-embedded from that provenance
    shortlist = max(req.k, SHORTLIST)
    hits = ctx.index.search_models(vec, shortlist, None) if pv is None else pv.nearest(vec, shortlist)
    rows = _rows(ctx, [h.id for h in hits])
    hits = [h for h in hits if h.id in rows]
    got = thresholds.get(ctx)
    got_m = thresholds.get_matched(ctx)
    tol, nearest = thresholds.get_tolerance(ctx)  # one read per request, not one per candidate
    with ctx.session_factory() as s:
        keys = repo.question_ids_by_keys(s, [e.question for e in req.evaluations])
        mine = {keys[e.question]: float(e.score) for e in req.evaluations if e.question in keys}
        theirs = {m: dict(v) for m, v in repo.model_scores(s, [h.id for h in hits], prov).items()}
        shared = {
            h.id: sorted(q for q in theirs.get(h.id, {}) if q in mine)  # canonical order: by question id
            for h in hits
        }
        need = sorted({q for h in hits if len(shared[h.id]) >= req.min_shared for q in shared[h.id]})
        phi, _ = question_phi(ctx, s, need)
    matched = [h for h in hits if len(shared[h.id]) >= req.min_shared]
    pairs: list[tuple[EvalSet, EvalSet]] = []
    for h in matched:
        qs = shared[h.id]
        x = np.stack([phi[q] for q in qs]).astype(np.float32)  # (S, query_dim)
        pairs.append(
            (
                (x, np.asarray([theirs[h.id][q] for q in qs], np.float32)),
                (x, np.asarray([mine[q] for q in qs], np.float32)),
            )
        )
    md = dict(zip([h.id for h in matched], matched_distances(pairs, ctx.embedder.embed), strict=True))
    evidence = {
        h.id: shared_evidence(
            np.asarray([theirs[h.id][q] for q in shared[h.id]]),
            np.asarray([mine[q] for q in shared[h.id]]),
            tol.alpha,
        )
        for h in matched
    }
    disagree = {
        h.id: float(np.mean([abs(mine[q] - theirs[h.id][q]) for q in shared[h.id]]))
        for h in hits
        if shared[h.id]
    }
    judged = [
        (
            h.id,
            judge(
                h.distance,
                None if h.id not in md else float(md[h.id]),
                len(shared[h.id]),
                None if got is None else got[0],
                evidence.get(h.id),
                tol,
                len(req.evaluations),
                candidate_cap(nearest.get(h.id)),
            ),
        )
        for h in hits
    ]
    judged = resolve_ambiguity(judged, mine, theirs, tol.alpha)
    judged.sort(key=lambda mj: _order(mj[1]))
    read = FingerprintRead(
        fingerprint=ctx.embedder.fingerprint,
        n_evaluations=len(req.evaluations),
        min_shared=req.min_shared,
        candidates=len(hits),
        thresholds=None if got is None else thresholds_read(*got),
        matched_thresholds=None if got_m is None else thresholds_read(*got_m),
        tolerance=tolerance_read(tol),
        decision=decide(ctx, judged, rows, theirs, mine, tol, nearest),
        matches=[
            FingerprintMatch(
                model=brief(rows[m]),
                distance=j.distance,
                matched_distance=j.matched_distance,
                shared_questions=j.shared_questions,
                score_disagreement=disagree.get(m),
                verdict=j.verdict,
                verdict_basis=j.basis,
                evidence=None if j.evidence is None else evidence_read(j.evidence),
                why=j.why,
            )
            for m, j in judged[: req.k]
        ],
    )
    return finish(read, pv, [THRESHOLDS])


def evidence_read(ev: SharedEvidence) -> EvidenceRead:
    return EvidenceRead(
        shared_questions=ev.shared,
        disagreements=ev.disagreements,
        rate=ev.rate,
        lower=ev.lower,
        upper=ev.upper,
    )


def decide(
    ctx: Context,
    judged: list[tuple[uuid.UUID, Judgement]],
    rows: dict[uuid.UUID, PoolRow],
    theirs: dict[uuid.UUID, dict[uuid.UUID, float]],
    mine: dict[uuid.UUID, float],
    tol: Tolerance,
    nearest: dict[uuid.UUID, float],
) -> DecisionRead:
    """The overall answer: the best-ranked candidate's verdict, and for anything short of a decided
    `same` or `different`, how many and which probe questions would settle it."""
    if not judged:
        return DecisionRead(verdict="undetermined", model=None, why="no embedded model to compare with")
    best, j = judged[0]
    verdict: Verdict = j.verdict or "undetermined"
    if verdict != "same" and any(jj.verdict == "undetermined" for _, jj in judged):
        # a candidate that might still be the same model outranks a confident "related"
        best, j = next((m, jj) for m, jj in judged if jj.verdict == "undetermined")
        verdict = "undetermined"
    cap = candidate_cap(nearest.get(best))
    needed = questions_needed(j.evidence.rate, tol, cap) if j.evidence is not None else None
    probes: list[str] = []
    if verdict == "undetermined":
        missing = probe_keys_missing(ctx, theirs.get(best, {}), mine)
        probes = missing
        if needed is None and j.evidence is None:
            needed = questions_needed(0.0, tol, cap)  # what a perfect match would need
    return DecisionRead(
        verdict=verdict,
        model=brief(rows[best]),
        why=j.why,
        questions_needed=needed,
        probe_questions=probes,
    )


def probe_keys_missing(
    ctx: Context, candidate: dict[uuid.UUID, float], mine: dict[uuid.UUID, float], n: int = 128
) -> list[str]:
    """Keys of the probe set's questions that the candidate was scored on and the submission was not."""
    keys = [q.key for q in probe_set(ctx, n=n).questions]
    with ctx.session_factory() as s:
        ids = repo.question_ids_by_keys(s, keys)
    return [k for k in keys if ids.get(k) in candidate and ids.get(k) not in mine]
