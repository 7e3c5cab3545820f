"""Probe set: a fixed, versioned list of registered questions that discriminate between registered models.

Teams score every endpoint on the same probe questions, so registering and fingerprinting compare
models on shared questions (direct evidence) rather than on embeddings of different samples.

Choice (classical item analysis, the one-parameter view of a 2PL IRT fit): for each question scored
by at least `min_coverage` of the models read, p = mean score and a = the point-biserial correlation
of its scores with the models' accuracy on the other questions (its discrimination). Item information
at the registry's average ability is a^2 * p * (1 - p): high for questions that split models the way
their overall behaviour does, zero for questions everyone gets right or wrong. Questions are taken by
information within categories, categories in proportion to their eligible questions (largest
remainder), ties broken by key, so the set depends only on the registry's data.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from registry import repositories as repo
from registry.errors import InvalidInput
from registry.schemas import ProbeQuestionRead, ProbeSetRead
from registry.services.common import score_matrix
from registry.services.context import Context
from registry.tables import QuestionRow

METHOD = "item information a^2 p (1 - p) (point-biserial discrimination), stratified by category"
MAX_MODELS = 500  # models read (ordered by name): enough to rank questions, bounded cost

_cache: OrderedDict[tuple[object, ...], ProbeSetRead] = OrderedDict()
_cache_lock = threading.Lock()


def probe_set(ctx: Context, n: int = 128, *, min_coverage: float = 0.5) -> ProbeSetRead:
    """The probe set of at most n questions for the registry's current state (cached per state)."""
    if not 1 <= n <= 10_000:
        raise InvalidInput(f"n must be between 1 and 10000, got {n}")
    with ctx.session_factory() as s:
        state = (id(ctx.session_factory), repo.registry_version(s), repo.count_questions(s), n, min_coverage)
        with _cache_lock:
            if state in _cache:
                _cache.move_to_end(state)
                return _cache[state]
        rows = repo.get_models(s, repo.iter_model_ids(s))
        ids = [r.id for r in sorted(rows.values(), key=lambda r: (r.name, str(r.id)))][:MAX_MODELS]
        scores = repo.model_scores(s, ids)
        use = [m for m in ids if scores.get(m)]
        qids = sorted({q for m in use for q, _ in scores[m]})
        questions = repo.get_questions(s, qids)
    result = choose(use, scores, questions, n, min_coverage)
    with _cache_lock:
        _cache[state] = result
        while len(_cache) > 32:
            _cache.popitem(last=False)
    return result


def choose(
    use: Sequence[uuid.UUID],
    scores: dict[uuid.UUID, list[tuple[uuid.UUID, float]]],
    questions: dict[uuid.UUID, QuestionRow],
    n: int,
    min_coverage: float,
) -> ProbeSetRead:
    """Pure part of `probe_set`: rank and pick questions from a (model -> [(question, score)]) map."""
    qids = sorted(questions, key=lambda q: questions[q].key)
    y = score_matrix(use, scores, qids).astype(np.float64)  # (M, Q)
    obs = ~np.isnan(y)
    count = obs.sum(axis=0)
    eligible = count >= max(2, int(np.ceil(min_coverage * len(use))))
    p = np.where(count > 0, np.nansum(y, axis=0) / np.maximum(count, 1), np.nan)
    info = np.zeros(len(qids))
    if len(use) >= 3 and eligible.any():
        yz = np.where(obs, y, 0.0)
        n_obs = obs.sum(axis=1, keepdims=True)
        rest = (yz.sum(axis=1, keepdims=True) - yz) / np.maximum(n_obs - 1, 1)  # accuracy elsewhere (M, Q)
        w = obs.astype(np.float64)
        c = np.maximum(count, 1)
        mx, mr = (yz * w).sum(0) / c, (rest * w).sum(0) / c
        cov = ((yz - mx) * (rest - mr) * w).sum(0)
        vx, vr = (((yz - mx) ** 2) * w).sum(0), (((rest - mr) ** 2) * w).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where((vx > 1e-12) & (vr > 1e-12), cov / np.sqrt(vx * vr), 0.0)
        info = np.where(eligible, np.clip(a, 0.0, None) ** 2 * np.nan_to_num(p * (1 - p)), 0.0)
    picked = _stratified(qids, questions, eligible, info, n)
    keys = [questions[qids[j]].key for j in picked]
    return ProbeSetRead(
        version=hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16],
        n=len(picked),
        requested=n,
        models=len(use),
        eligible_questions=int(eligible.sum()),
        method=METHOD,
        questions=[
            ProbeQuestionRead(
                key=questions[qids[j]].key,
                text=questions[qids[j]].text,
                category=questions[qids[j]].category,
                benchmark=questions[qids[j]].benchmark,
                information=float(info[j]),
                p_correct=float(p[j]),
                models_scored=int(count[j]),
            )
            for j in picked
        ],
    )


def _stratified(
    qids: list[uuid.UUID],
    questions: dict[uuid.UUID, QuestionRow],
    eligible: np.ndarray,
    info: np.ndarray,
    n: int,
) -> list[int]:
    """Indices of the chosen questions: per category by (information desc, key), categories sized in
    proportion to their eligible questions by largest remainder; leftovers go to the best overall."""
    cats: dict[str, list[int]] = {}
    for j in np.flatnonzero(eligible):
        cats.setdefault(questions[qids[j]].category or "", []).append(int(j))
    total = sum(len(v) for v in cats.values())
    if total == 0:
        return []
    n = min(n, total)
    ranked = {c: sorted(v, key=lambda j: (-info[j], questions[qids[j]].key)) for c, v in cats.items()}
    quota = {c: n * len(v) / total for c, v in ranked.items()}
    take = {c: int(q) for c, q in quota.items()}
    for c in sorted(ranked, key=lambda c: (-(quota[c] - take[c]), c))[: n - sum(take.values())]:
        take[c] += 1
    picked = [j for c in sorted(ranked) for j in ranked[c][: take[c]]]
    return sorted(picked, key=lambda j: (-info[j], questions[qids[j]].key))
