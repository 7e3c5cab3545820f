"""Decision use cases on the registry: portfolio, fallbacks, route, fingerprint, duplicates, compare.

Vector work goes through the `VectorIndex` port (scans and filtered nearest-neighbour queries), the
encoder through the `Embedder` port, SQL through `registry.repositories`. All use cases are reads:
nothing here commits.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.decisions.compare import compare_models
from registry.decisions.errors import (
    EmptyCandidatesError,
    EmptyQueryError,
    InvalidDecisionInput,
    NotEmbeddedError,
    UnknownModelError,
)
from registry.decisions.fingerprint import (
    MATCHED_KEY,
    EvalSet,
    FingerprintThresholds,
    Verdict,
    calibrate,
    calibrate_matched,
    load_calibration,
    matched_distances,
    pair_seed,
    shared_sample,
)
from registry.decisions.portfolio import pairwise_distances, select_portfolio
from registry.decisions.routing import predicted_agreement, predicted_routing_accuracy, route
from registry.decisions.schemas import (
    Basis,
    CategoryRead,
    CompareRead,
    CoverageRead,
    DuplicatePair,
    DuplicatesRead,
    FallbackRead,
    FallbacksRead,
    FingerprintMatch,
    FingerprintRead,
    FingerprintRequest,
    ModelBrief,
    PortfolioFilters,
    PortfolioRead,
    PortfolioRequest,
    PortfolioSpec,
    QueryRouteRead,
    RankedRead,
    ReferenceQueries,
    RouteRead,
    RouteRequest,
    ThresholdsRead,
)
from registry.ports import ModelFilter
from registry.services import embed_evaluations, get_question_vectors
from registry.services.common import question_phi
from registry.services.context import Context
from registry.tables import ModelRow

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
SHORTLIST = 20  # fingerprint candidates compared on shared questions: the max(k, SHORTLIST) nearest


# ---------------------------------------------------------------- helpers


def price_of(row: ModelRow) -> float | None:
    """input + output price per million tokens; None when neither is known."""
    if row.input_price is None and row.output_price is None:
        return None
    return float(row.input_price or 0.0) + float(row.output_price or 0.0)


def brief(row: ModelRow) -> ModelBrief:
    return ModelBrief(
        id=row.id,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]  # the CHECK constraint guarantees a Status
        provider=row.provider,
        params_b=row.params_b,
        price=price_of(row),
    )


def to_filter(f: PortfolioFilters, **extra: object) -> ModelFilter:
    flt = ModelFilter(
        statuses=tuple(f.status),
        providers=tuple(f.provider),
        families=tuple(f.family),
        licenses=tuple(f.license),
        tags=tuple(f.tags),
        min_params=f.min_params,
        max_params=f.max_params,
        min_context_window=f.min_context_window,
        max_input_price=f.max_input_price,
        max_output_price=f.max_output_price,
    )
    return replace(flt, **extra)  # type: ignore[arg-type]


@dataclass
class Pool:
    """Embedded models matching a filter: ids, vectors (N, E) and SQL rows, in one order."""

    ids: list[uuid.UUID]
    vectors: np.ndarray
    rows: list[ModelRow]

    def index_of(self) -> dict[uuid.UUID, int]:
        return {m: i for i, m in enumerate(self.ids)}


def load_pool(ctx: Context, flt: ModelFilter | None) -> Pool:
    """Scan the index for matching models and join their rows (orphan vectors are skipped)."""
    ids, vectors = ctx.index.scan_models(flt)
    with ctx.session_factory() as s:
        rows = repo.get_models(s, ids)
        s.expunge_all()
    keep = [i for i, m in enumerate(ids) if m in rows]
    return Pool(
        ids=[ids[i] for i in keep],
        vectors=np.asarray(vectors, dtype=np.float32).reshape(len(ids), ctx.embedder.embedding_dim)[keep],
        rows=[rows[ids[i]] for i in keep],
    )


def require_models(ctx: Context, ids: Sequence[uuid.UUID], what: str = "model") -> dict[uuid.UUID, ModelRow]:
    """Rows of these ids; unknown ids raise UnknownModelError naming them."""
    with ctx.session_factory() as s:
        rows = repo.get_models(s, list(ids))
        s.expunge_all()
    unknown = [str(i) for i in ids if i not in rows]
    if unknown:
        raise UnknownModelError(f"unknown {what} id(s): {', '.join(unknown[:10])}")
    return rows


def require_vectors(ctx: Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
    """Embeddings of these (existing) models; a model without one raises NotEmbeddedError."""
    vecs = ctx.index.get_model_vectors(list(ids))
    missing = [str(i) for i in ids if i not in vecs]
    if missing:
        raise NotEmbeddedError(
            f"model(s) {', '.join(missing[:10])} have no embedding under encoder {ctx.embedder.fingerprint}: "
            "add evaluations, or run `locus-registry reindex`"
        )
    return vecs


def check_queries(texts: Sequence[str], field: str = "queries") -> None:
    for i, t in enumerate(texts):
        if not t.strip():
            raise EmptyQueryError(f"{field}[{i}] is an empty string: give the query text")


def reference_queries(ctx: Context, ref: ReferenceQueries | None) -> tuple[np.ndarray, list[str]]:
    """Encodings (Q, query_dim) and categories of reference queries: given texts/keys, else the registry's."""
    ref = ref or ReferenceQueries()
    phis: list[np.ndarray] = []
    cats: list[str] = []
    if ref.texts:
        check_queries(ref.texts, "reference.texts")
        phis.append(ctx.embedder.encode_queries(ref.texts))
        cats += ["query"] * len(ref.texts)
    if ref.question_keys:
        rows, mat = get_question_vectors(ctx, ref.question_keys)
        phis.append(mat)
        cats += [r.category or "uncategorised" for r in rows]
    if not phis:
        with ctx.session_factory() as s:
            taken: list[tuple[uuid.UUID, str]] = []
            for batch in repo.iter_questions(s):
                taken += [(q.id, q.category or "uncategorised") for q in batch]
                if len(taken) >= ref.limit:
                    break
            taken = taken[: ref.limit]
            if taken:
                phi, _ = question_phi(ctx, s, [q for q, _ in taken])
                phis.append(np.stack([phi[q] for q, _ in taken]).astype(np.float32))
                cats += [c for _, c in taken]
    if not phis:
        return np.zeros((0, ctx.embedder.query_dim), dtype=np.float32), []
    return np.concatenate(phis).astype(np.float32), cats


# ---------------------------------------------------------------- portfolio


def portfolio(ctx: Context, req: PortfolioRequest) -> PortfolioRead:
    """Choose a portfolio from the filtered pool and estimate its routing accuracy on reference queries."""
    if req.k is None and req.param_budget is None and req.price_budget is None:
        raise InvalidDecisionInput("give k, param_budget or price_budget")
    if req.param_budget is not None and req.price_budget is not None:
        raise InvalidDecisionInput("give param_budget or price_budget, not both")
    require_models(ctx, [*req.include, *req.exclude])
    pool = load_pool(ctx, to_filter(req.filters))
    if not pool.ids:
        raise EmptyCandidatesError("no embedded model matches the portfolio filters")
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
        pool.vectors,
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
    return PortfolioRead(
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


# ---------------------------------------------------------------- fallbacks


def fallbacks(
    ctx: Context,
    model_id: uuid.UUID,
    k: int = 5,
    flt: ModelFilter | None = None,
    *,
    same_license: bool = False,
    reference: ReferenceQueries | None = None,
) -> FallbacksRead:
    """The k nearest *active* models satisfying the hard constraints in `flt`, with predicted agreement."""
    if k < 1:
        raise InvalidDecisionInput(f"k must be at least 1, got {k}")
    row = require_models(ctx, [model_id])[model_id]
    vec = require_vectors(ctx, [model_id])[model_id]
    base = flt or ModelFilter()
    licenses = base.licenses
    if same_license:
        if row.license is None:
            raise InvalidDecisionInput(f"model {model_id} has no license, so same_license cannot apply")
        licenses = (row.license,)
    query = replace(base, statuses=("active",), licenses=licenses, exclude_ids=(*base.exclude_ids, model_id))
    hits = ctx.index.search_models(vec, k, query)
    rows = _rows(ctx, [h.id for h in hits])
    hits = [h for h in hits if h.id in rows]
    phi, _ = reference_queries(ctx, reference)
    agree: list[float | None] = [None] * len(hits)
    if hits and len(phi):
        cand = require_vectors(ctx, [h.id for h in hits])
        z = np.stack([vec, *[cand[h.id] for h in hits]]).astype(np.float32)
        p = ctx.embedder.predict(z, phi)  # (Q, 1 + n)
        agree = [float(a) for a in predicted_agreement(p[:, 0], p[:, 1:])]
    return FallbacksRead(
        model_id=model_id,
        fingerprint=ctx.embedder.fingerprint,
        reference_queries=len(phi),
        items=[
            FallbackRead(model=brief(rows[h.id]), distance=h.distance, predicted_agreement=a)
            for h, a in zip(hits, agree, strict=True)
        ],
    )


def _rows(ctx: Context, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ModelRow]:
    with ctx.session_factory() as s:
        rows = repo.get_models(s, list(ids))
        s.expunge_all()
    return rows


# ---------------------------------------------------------------- routing


def route_queries(ctx: Context, req: RouteRequest) -> RouteRead:
    """Score every (query, candidate) in one predictor pass and pick the best available model per query."""
    check_queries(req.queries)
    if req.candidates is not None and req.portfolio is not None:
        raise InvalidDecisionInput("give candidates or portfolio, not both")
    if req.candidates is not None:
        if not req.candidates:
            raise EmptyCandidatesError("candidates is an empty list: name at least one model")
        ids = list(dict.fromkeys(req.candidates))
        rows = require_models(ctx, ids, "candidate")
        vecs = require_vectors(ctx, ids)
        pool = Pool(ids=ids, vectors=np.stack([vecs[i] for i in ids]), rows=[rows[i] for i in ids])
    elif req.portfolio is not None:
        pool = _portfolio_pool(ctx, req.portfolio)
    else:
        pool = load_pool(ctx, None)
        if not pool.ids:
            raise EmptyCandidatesError("no embedded model is registered: nothing to route to")
    phi = ctx.embedder.encode_queries(req.queries)  # (Q, query_dim)
    p = ctx.embedder.predict(pool.vectors, phi)  # (Q, M)
    avail = [r.status == "active" for r in pool.rows]
    if not any(avail):
        raise EmptyCandidatesError("none of the candidate models is active")
    decisions = route(
        p,
        prices=[price_of(r) for r in pool.rows],
        cost_weight=req.cost_weight,
        top_k=req.top_k,
        available=avail,
    )
    active_ids = tuple(m for m, a in zip(pool.ids, avail, strict=True) if a)
    nearest: dict[int, list[FallbackRead]] = {}
    out = []
    for qi, d in enumerate(decisions):
        fb: list[FallbackRead] = []
        if not avail[d.preferred] and req.fallbacks > 0:
            if d.preferred not in nearest:
                flt = ModelFilter(statuses=("active",), include_ids=active_ids)
                hits = ctx.index.search_models(pool.vectors[d.preferred], req.fallbacks, flt)
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
    return RouteRead(fingerprint=ctx.embedder.fingerprint, candidates=len(pool.ids), routes=out)


def _portfolio_pool(ctx: Context, spec: PortfolioSpec) -> Pool:
    pool = load_pool(ctx, to_filter(spec.filters))
    if not pool.ids:
        raise EmptyCandidatesError("no embedded model matches the portfolio filters")
    if spec.k is None and spec.param_budget is None and spec.price_budget is None:
        raise InvalidDecisionInput("portfolio: give k, param_budget or price_budget")
    weights = None
    budget = spec.param_budget if spec.param_budget is not None else spec.price_budget
    if spec.param_budget is not None:
        weights = np.array([np.nan if r.params_b is None else r.params_b for r in pool.rows])
    elif spec.price_budget is not None:
        weights = np.array([np.nan if price_of(r) is None else price_of(r) for r in pool.rows])
    port = select_portfolio(pool.vectors, method=spec.method, k=spec.k, budget=budget, weights=weights)
    keep = list(port.chosen)
    return Pool(
        ids=[pool.ids[i] for i in keep], vectors=pool.vectors[keep], rows=[pool.rows[i] for i in keep]
    )


# ---------------------------------------------------------------- fingerprinting


class ThresholdProvider:
    """Fingerprint thresholds (global and matched-question) for the loaded encoder.

    First choice: `calibration.json` beside the checkpoint, if it was made for this encoder's
    fingerprint (matched thresholds under its `matched` key). Otherwise each kind is calibrated from
    the registry's own evaluations (see `registry.decisions.fingerprint`), cached until the number of
    embedded models changes.
    """

    def __init__(self, calibration_file: Path | None = None) -> None:
        self.calibration_file = calibration_file
        self._lock = threading.Lock()
        self._cached: tuple[tuple[str, int], FingerprintThresholds, str] | None = None
        self._cached_matched: tuple[tuple[str, int], FingerprintThresholds | None] | None = None

    def _from_file(
        self, fingerprint: str
    ) -> tuple[FingerprintThresholds, FingerprintThresholds | None] | None:
        path = self.calibration_file
        if path is None or not path.is_file():
            return None
        try:
            th, matched = load_calibration(path)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable fingerprint calibration %s: %s", path, exc)
            return None
        made_for = th.notes.get("checkpoint_fingerprint")
        if made_for is not None and made_for != fingerprint:
            log.warning("%s was calibrated for encoder %s, not %s: ignored", path, made_for, fingerprint)
            return None
        return th, matched

    def get(self, ctx: Context) -> tuple[FingerprintThresholds, str] | None:
        """(global thresholds, where they came from), or None when there is too little data to calibrate."""
        fp = ctx.embedder.fingerprint
        got = self._from_file(fp)
        if got is not None:
            return got[0], str(self.calibration_file)
        key = (fp, ctx.index.count_models())
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1], self._cached[2]
            result = calibrate_from_registry(ctx)
            if result is None:
                return None
            self._cached = (key, result, "calibrated from the registry's evaluations")
            return result, self._cached[2]

    def get_matched(self, ctx: Context) -> tuple[FingerprintThresholds, str] | None:
        """(matched-question thresholds, where they came from), or None when there is too little data."""
        fp = ctx.embedder.fingerprint
        got = self._from_file(fp)
        if got is not None and got[1] is not None:
            return got[1], f"{self.calibration_file} ({MATCHED_KEY})"
        key = (fp, ctx.index.count_models())
        with self._lock:
            if self._cached_matched is None or self._cached_matched[0] != key:
                self._cached_matched = (key, calibrate_matched_from_registry(ctx))
            th = self._cached_matched[1]
        return None if th is None else (th, "calibrated from the registry's evaluations (matched questions)")


def calibration_models(s: Session, max_models: int) -> list[uuid.UUID]:
    """The registered models calibration samples from, ordered by name (then id): UUIDs are random, so
    ordering by them would give different thresholds for the same data on every deployment."""
    rows = repo.get_models(s, repo.iter_model_ids(s))
    return [r.id for r in sorted(rows.values(), key=lambda r: (r.name, str(r.id)))][:max_models]


def by_question_key(
    s: Session, scores: dict[uuid.UUID, list[tuple[uuid.UUID, float]]]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, float]]]:
    """Each model's (question id, score) pairs ordered by question key, so seeded samples drawn from
    them are the same for the same data (question ids are random UUIDs)."""
    keys = {
        q: r.key for q, r in repo.get_questions(s, sorted({q for v in scores.values() for q, _ in v})).items()
    }
    return {m: sorted(v, key=lambda p: keys.get(p[0], "")) for m, v in scores.items()}


def calibrate_from_registry(
    ctx: Context, *, n: int = 128, repeats: int = 2, max_models: int = 300, seed: int = 0
) -> FingerprintThresholds | None:
    """Calibrate thresholds on the registered models' evaluations (n shrinks to fit small registries)."""
    with ctx.session_factory() as s:
        ids = calibration_models(s, max_models)
        scores = by_question_key(s, repo.model_scores(s, ids))
        counts = sorted((len(v) for v in scores.values()), reverse=True)
        if len(counts) < 2 or counts[1] < 8:
            return None
        n_eff = min(n, counts[1] // 2)
        use = [m for m in ids if len(scores.get(m, ())) >= 2 * n_eff]
        qids = sorted({q for m in use for q, _ in scores[m]})
        phi, _ = question_phi(ctx, s, qids)
    sets = [
        (
            np.stack([phi[q] for q, _ in scores[m]]).astype(np.float32),
            np.asarray([y for _, y in scores[m]], np.float32),
        )
        for m in use
    ]
    try:
        th, _ = calibrate(sets, ctx.embedder.embed, n=n_eff, repeats=repeats, seed=seed)
    except InvalidDecisionInput:
        return None
    return th


def calibrate_matched_from_registry(
    ctx: Context, *, n: int = 128, max_models: int = 300, max_pairs: int = 2000, seed: int = 0
) -> FingerprintThresholds | None:
    """Matched-question thresholds from the registered models' scores on shared questions.

    n shrinks to the median number of questions shared by a pair when that is smaller (at least 8).
    The registry cannot tell which registered models are one model under two names, so every pair
    counts as distinct: a registry full of duplicates calibrates a stricter `same`.
    """
    with ctx.session_factory() as s:
        ids = calibration_models(s, max_models)
        scores = repo.model_scores(s, ids)
        use = [m for m in ids if scores.get(m)]
        if len(use) < 2:
            return None
        qids = sorted({q for m in use for q, _ in scores[m]})
        keys = {q: r.key for q, r in repo.get_questions(s, qids).items()}
        qids.sort(key=lambda q: keys.get(q, ""))  # sampling order independent of random UUIDs
        col = {q: i for i, q in enumerate(qids)}
        labels = np.full((len(use), len(qids)), np.nan, dtype=np.float32)  # (M, Q)
        for r, m in enumerate(use):
            labels[r, [col[q] for q, _ in scores[m]]] = [y for _, y in scores[m]]
        obs = (~np.isnan(labels)).astype(np.int32)
        shared = (obs @ obs.T)[np.triu_indices(len(use), k=1)]
        n_eff = int(min(n, np.median(shared)))
        if n_eff < 8:
            return None
        phi_map, _ = question_phi(ctx, s, qids)
    phi = np.stack([phi_map[q] for q in qids]).astype(np.float32)  # (Q, query_dim)
    try:
        th, _, _ = calibrate_matched(
            labels,
            phi,
            ctx.embedder.embed,
            n=n_eff,
            max_pairs=max_pairs,
            seed=seed,
            notes={"models": len(use)},
        )
    except InvalidDecisionInput:
        return None
    return th


def thresholds_read(th: FingerprintThresholds, source: str) -> ThresholdsRead:
    return ThresholdsRead(
        same=th.same,
        related=th.related,
        n_evaluations=th.n_evaluations,
        source=source,
        tpr=th.tpr,
        fpr=th.fpr,
    )


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


def duplicates(
    ctx: Context,
    thresholds: ThresholdProvider,
    *,
    limit: int = 1000,
    min_shared: int = 32,
    neighbours: int = 3,
    max_shared: int = 512,
) -> DuplicatesRead:
    """Registered pairs judged `same`, on matched distances over their shared questions where they
    share at least `min_shared` (at most `max_shared`, a seeded sample, are embedded), else on the
    global distance.

    Work is bounded: only pairs closer than the global `related` threshold, plus each model's
    `neighbours` nearest, are compared on shared questions.
    """
    got = thresholds.get(ctx)
    if got is None:
        raise InvalidDecisionInput(
            "no fingerprint calibration for this encoder and too few evaluations in the registry "
            "to calibrate one (need two models with at least 16 evaluations)"
        )
    th, source = got
    got_m = thresholds.get_matched(ctx)
    pool = load_pool(ctx, None)
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
        scores = repo.model_scores(s, [pool.ids[x] for x in involved])
        chosen: dict[tuple[int, int], list[uuid.UUID]] = {}
        for i, j in cand:
            a, b = dict(scores.get(pool.ids[i], [])), dict(scores.get(pool.ids[j], []))
            qs = sorted(a.keys() & b.keys())
            shared_n[(i, j)] = len(qs)
            if got_m is not None and len(qs) >= min_shared:
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
    disagree = {k: float(np.mean(np.abs(a[1] - b[1]))) for k, (a, b) in zip(matched_keys, pairs, strict=True)}
    found: list[tuple[tuple[int, int, float], int, int, Judgement]] = []
    for (i, j), dist in cand.items():
        m = md.get((i, j))
        jd = judge(
            dist, None if m is None else float(m), shared_n[(i, j)], th, None if got_m is None else got_m[0]
        )
        if jd.verdict == "same":
            found.append((_order(jd), i, j, jd))
    found.sort(key=lambda f: f[0])
    return DuplicatesRead(
        fingerprint=ctx.embedder.fingerprint,
        thresholds=thresholds_read(th, source),
        matched_thresholds=None if got_m is None else thresholds_read(*got_m),
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
            )
            for _, i, j, jd in found[:limit]
        ],
    )


# ---------------------------------------------------------------- compare


def compare(
    ctx: Context,
    a: uuid.UUID,
    b: uuid.UUID,
    thresholds: ThresholdProvider | None = None,
    reference: ReferenceQueries | None = None,
) -> CompareRead:
    """Distance, verdict, predicted agreement and per-category predicted accuracy of two models."""
    rows = require_models(ctx, [a, b])
    vecs = require_vectors(ctx, [a, b])
    phi, cats = reference_queries(ctx, reference)
    if len(phi):
        p = ctx.embedder.predict(np.stack([vecs[a], vecs[b]]).astype(np.float32), phi)  # (Q, 2)
        pa, pb = p[:, 0], p[:, 1]
    else:
        pa = pb = np.zeros(0)
    c = compare_models(vecs[a], vecs[b], pa, pb, cats)
    got = thresholds.get(ctx) if thresholds is not None else None
    return CompareRead(
        a=brief(rows[a]),
        b=brief(rows[b]),
        fingerprint=ctx.embedder.fingerprint,
        distance=c.distance,
        verdict=None if got is None else got[0].verdict(c.distance),
        reference_queries=len(phi),
        predicted_agreement=c.predicted_agreement,
        predicted_accuracy_a=c.accuracy_a,
        predicted_accuracy_b=c.accuracy_b,
        categories=[
            CategoryRead(
                category=r.category, queries=r.n_queries, predicted_accuracy_a=r.a, predicted_accuracy_b=r.b
            )
            for r in c.categories
        ],
    )
