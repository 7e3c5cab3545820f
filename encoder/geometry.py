"""Geometry as users get it: does embedding distance mean behaviour on test questions?

Every model is embedded from its *own* random K train-question evaluations (different questions per
model, as users register them), and distances are compared with answer disagreement on test questions:

- `pearson` / `spearman` of distance vs disagreement over model pairs;
- `ceiling`: Pearson between the disagreement rates on two random halves of the test questions, the
  reliability of the target itself (no distance can track it better than it tracks itself);
- `acc_diff`: the same correlation for |acc_a - acc_b| from the same samples (a distance that knows
  only each model's overall accuracy);
- `probe_observed` / `probe_embedding` / `probe_combined`: when every model was scored on the same
  `probe` random train questions, the observed disagreement on them, the embedding distance from those
  scores, and the two combined (`combined_distance`);
- `profile_pearson`: the same for the mean |difference| of the predictor's P(correct) of the two
  models on the train questions (a distance read through the predictor, no shared questions needed);
- `cluster_pearson`: the same for the question-cluster profiles (`encoder.clusters`: accuracy per
  k-means group of the train questions' encodings, from each model's own sample; no training), and
  `profile_cluster_pearson` for the mean of that distance and the predictor's profile distance;
- `response_pearson`: the same for the item-response profiles (`registry.item_response`: question
  difficulties from every model's own sample, each model's ability and per-group offsets from its own;
  no training; `response_one_group_pearson` with every question in one group),
  `profile_response_pearson` for its mean with the predictor's profile distance, and
  `probe_response_pearson` / `probe_response_combined_pearson` in the probe setting;
- `nn_agreement`: answer agreement of each model with its nearest neighbour by distance, next to
  `nn_agreement_best`, that of its truly closest model; `nn_agreement_response` with the nearest by
  response distance, and `nn_agreement_response_retrieved` with the nearest by response distance among
  the `retrieve` nearest by embedding distance (what `similar` does: vector search, then re-rank);
- `same_tpr`: two disjoint K-samples of one model must land closer than samples of distinct models:
  share of same-model pairs below the distance that keeps FPR <= `max_fpr` on distinct pairs
  (`same_tpr_response` for the response distance on the same samples).

Pairs are restricted to those involving at least one model of `focus` (e.g. held-out models) and
sharing at least `min_shared` test questions. Pure numpy: `embed` is any function from sets of
(phi (n, d), scores (n,)) to an (B, E) array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from encoder.clusters import cluster_distance, cluster_profile, group_weights, question_clusters
from encoder.metrics import disagreement_matrix, pairwise_distances

EvalSet = tuple[np.ndarray, np.ndarray]
EmbedFn = Callable[[Sequence[EvalSet]], np.ndarray]
ResponseFn = Callable[[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray], np.ndarray]


def own_samples(
    labels: np.ndarray, questions: np.ndarray, k: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """For each model (row of labels), k random question indices among `questions` it was scored on
    (all of them when it has fewer), sorted."""
    out = []
    for row in labels:
        have = questions[~np.isnan(row[questions])]
        out.append(np.sort(rng.permutation(have)[:k]))
    return out


def calibrate_profiles(
    prof: np.ndarray, samples: list[np.ndarray], labels: np.ndarray, questions: np.ndarray, iters: int = 20
) -> np.ndarray:
    """Shift each model's predicted P(correct) profile in logit space so that its mean over the model's own
    sampled questions equals the model's observed accuracy on them (Newton steps on one bias per model).

    prof (M, Q) over `questions`; samples[m] indexes question columns of `labels`. The predictor's pattern
    (which questions a model gets right) is kept; its overall level becomes the observed one.
    """
    col = {int(q): i for i, q in enumerate(questions)}
    p = np.clip(prof.astype(np.float64), 1e-4, 1 - 1e-4)
    logit = np.log(p) - np.log1p(-p)
    bias = np.zeros(len(prof))
    for m, q in enumerate(samples):
        idx = [col[int(x)] for x in q if int(x) in col]
        if not idx:
            continue
        target = float(np.clip(np.nanmean(labels[m, q]), 1e-3, 1 - 1e-3))
        lm = logit[m, idx]
        b = 0.0
        for _ in range(iters):
            s = 1.0 / (1.0 + np.exp(-(lm + b)))
            grad = s.mean() - target
            hess = max((s * (1 - s)).mean(), 1e-6)
            b -= grad / hess
            if abs(grad) < 1e-6:
                break
        bias[m] = b
    return np.asarray(1.0 / (1.0 + np.exp(-(logit + bias[:, None]))))


def pair_mask(n_models: int, focus: np.ndarray | None, shared: np.ndarray, min_shared: int) -> np.ndarray:
    """(M, M) upper-triangle pairs with at least one focus model and enough shared test questions."""
    m = np.triu(np.ones((n_models, n_models), dtype=bool), k=1) & (shared >= min_shared)
    if focus is not None:
        f = np.zeros(n_models, dtype=bool)
        f[focus] = True
        m &= f[:, None] | f[None, :]
    return m


def correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Pearson, Spearman) of two equal-length vectors; NaN when either is constant or too short."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        return math.nan, math.nan
    return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0])


def combined_distance(
    embedding: np.ndarray, observed: np.ndarray, shared: np.ndarray, *, scale: float, prior: float
) -> np.ndarray:
    """Disagreement estimate from both sources of evidence: the embedding distance turned into a
    disagreement rate (`embedding / scale`) counts as `prior` questions, the observed disagreement on
    `shared` questions as that many; their weighted mean. With nothing shared it is the embedding's."""
    emb_rate = embedding / scale
    obs = np.where(shared > 0, np.nan_to_num(observed), 0.0)
    return np.asarray((prior * emb_rate + shared * obs) / (prior + shared))


def fit_scale(distance: np.ndarray, disagreement: np.ndarray) -> float:
    """Least-squares slope through the origin of distance on disagreement (distance ~ scale * rate)."""
    ok = np.isfinite(distance) & np.isfinite(disagreement)
    den = float((disagreement[ok] ** 2).sum())
    return float((distance[ok] * disagreement[ok]).sum() / den) if den > 0 else math.nan


def tpr_at_fpr(same: np.ndarray, distinct: np.ndarray, max_fpr: float) -> float:
    """Share of `same` scores strictly below the threshold allowing at most max_fpr of `distinct`."""
    if len(same) == 0 or len(distinct) == 0:
        return math.nan
    d = np.sort(distinct)
    threshold = d[math.floor(max_fpr * len(d))]
    return float((same < threshold).mean())


def geometry_report(
    embed: EmbedFn,
    labels: np.ndarray,
    phi: np.ndarray,
    train_q: np.ndarray,
    test_q: np.ndarray,
    *,
    k: int,
    seed: int,
    focus: np.ndarray | None = None,
    probe: int = 128,
    scale: float | None = None,
    prior: float = 64.0,
    min_shared: int = 20,
    max_fpr: float = 0.01,
    extra_vectors: dict[str, Callable[[list[np.ndarray]], np.ndarray]] | None = None,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    groups: np.ndarray | None = None,
    response: ResponseFn | None = None,
    retrieve: int = 30,
) -> dict[str, Any]:
    """All figures of the module doc for one source at one K. labels (M, Q) with NaN = not scored.

    `extra_vectors` maps a baseline name to a function placing every model from the same own samples
    (list of question-index arrays) and returning its (M, E) vectors; their distances are reported
    beside the encoder's. `scale` turns embedding distance into a disagreement rate for the combined
    distance; when None it is fitted on the probe setting's own pairs (train questions only).
    `response(labels, samples, groups, reference)`: the (M, M) item-response distances between models known
    by their own samples (`registry.item_response.response_distances`, passed in: the encoder knows
    nothing of the registry); `groups` (Q,) ints: each question's category for it, one group when None.
    """
    rng = np.random.default_rng(seed)
    n_models = labels.shape[0]
    y_test = labels[:, test_q].T  # (Q_test, M)
    rate, shared = disagreement_matrix(y_test)
    pairs = pair_mask(n_models, focus, shared, min_shared)
    target = rate[pairs]

    # split-half ceiling of the target itself
    perm = rng.permutation(len(test_q))
    half_a, half_b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    rate_a, _ = disagreement_matrix(y_test[half_a])
    rate_b, _ = disagreement_matrix(y_test[half_b])
    ceiling = correlations(rate_a[pairs], rate_b[pairs])[0]

    samples = own_samples(labels, train_q, k, rng)
    z = np.asarray(embed([(phi[q], labels[m, q]) for m, q in enumerate(samples)]), dtype=np.float64)
    dist = pairwise_distances(z)
    acc = np.array([labels[m, q].mean() if len(q) else np.nan for m, q in enumerate(samples)])
    acc_diff = np.abs(acc[:, None] - acc[None, :])
    out: dict[str, Any] = {
        "k": k,
        "k_used_median": float(np.median([len(q) for q in samples])),
        "n_pairs": int(pairs.sum()),
        "ceiling": ceiling,
    }
    out["pearson"], out["spearman"] = correlations(dist[pairs], target)
    out["acc_diff_pearson"], out["acc_diff_spearman"] = correlations(acc_diff[pairs], target)
    # question-cluster profiles: groups of the train questions, each model's own sample
    clusters = np.zeros(labels.shape[1], dtype=np.int64)
    clusters[train_q] = question_clusters(phi[train_q])
    n_clu = int(clusters[train_q].max()) + 1 if len(train_q) else 1
    cp = np.stack([cluster_profile(clusters[q], labels[m, q], n_clu) for m, q in enumerate(samples)])
    cdist = cluster_distance(cp[:, None, :], cp[None, :, :], group_weights(clusters[train_q], n_clu))
    out["cluster_pearson"], out["cluster_spearman"] = correlations(cdist[pairs], target)
    # item-response profiles: difficulties from every model's own sample (what a registry holds)
    grp = np.zeros(labels.shape[1], dtype=np.int64) if groups is None else np.asarray(groups, np.int64)
    rdist = None if response is None else response(labels, samples, grp, train_q)
    if response is not None and rdist is not None:
        out["response_pearson"], out["response_spearman"] = correlations(rdist[pairs], target)
        if groups is not None:  # what the categories buy: every question in one group
            one = response(labels, samples, np.zeros_like(grp), train_q)
            out["response_one_group_pearson"] = correlations(one[pairs], target)[0]
    if predict is not None:
        # behaviour profile: predicted P(correct) on the train questions (never test), compared by the
        # mean absolute difference, an expected disagreement that needs no shared questions
        prof = np.asarray(predict(z.astype(np.float32), phi[train_q]), dtype=np.float64).T  # (M, Q)
        pd = np.abs(prof[:, None, :] - prof[None, :, :]).mean(-1)
        out["profile_pearson"], out["profile_spearman"] = correlations(pd[pairs], target)
        mix = (pd + cdist) / 2.0
        out["profile_cluster_pearson"], out["profile_cluster_spearman"] = correlations(mix[pairs], target)
        if rdist is not None:
            mix = (pd + rdist) / 2.0
            out["profile_response_pearson"] = correlations(mix[pairs], target)[0]
        # the same profile, its level set to each model's observed accuracy on its own sample
        cal = calibrate_profiles(prof, samples, labels, train_q)
        cd = np.abs(cal[:, None, :] - cal[None, :, :]).mean(-1)
        out["profile_cal_pearson"], out["profile_cal_spearman"] = correlations(cd[pairs], target)
    for name, place in (extra_vectors or {}).items():
        v = pairwise_distances(np.asarray(place(samples), dtype=np.float64))
        out[f"{name}_pearson"], out[f"{name}_spearman"] = correlations(v[pairs], target)

    # nearest neighbour agreement (focus models' neighbours among all models)
    rows = np.arange(n_models) if focus is None else np.asarray(focus)
    d_nn = dist.copy()
    np.fill_diagonal(d_nn, np.inf)
    d_nn[shared < min_shared] = np.inf
    r_nn = np.where(shared >= min_shared, rate, np.inf)
    np.fill_diagonal(r_nn, np.inf)
    has = np.isfinite(d_nn[rows]).any(axis=1)
    rows = rows[has]
    out["nn_agreement"] = (
        float((1.0 - rate[rows, d_nn[rows].argmin(axis=1)]).mean()) if len(rows) else math.nan
    )
    out["nn_agreement_best"] = float((1.0 - r_nn[rows].min(axis=1)).mean()) if len(rows) else math.nan
    if rdist is not None and len(rows):
        # `similar`'s two stages: the `retrieve` nearest by embedding, re-ranked by response distance
        d_r = np.where(np.isfinite(d_nn), rdist, np.inf)
        out["nn_agreement_response"] = float((1.0 - rate[rows, d_r[rows].argmin(axis=1)]).mean())
        top = np.argsort(d_nn[rows], axis=1)[:, :retrieve]
        pick = top[np.arange(len(rows)), np.take_along_axis(d_r[rows], top, axis=1).argmin(axis=1)]
        out["nn_agreement_response_retrieved"] = float((1.0 - rate[rows, pick]).mean())

    # same-model TPR from two disjoint K-samples
    twice = [
        m
        for m in (range(n_models) if focus is None else focus)
        if (~np.isnan(labels[m, train_q])).sum() >= 2 * k
    ]
    if len(twice) >= 2:
        first, second = [], []
        for m in twice:
            have = train_q[~np.isnan(labels[m, train_q])]
            p = rng.permutation(have)
            first.append(np.sort(p[:k]))
            second.append(np.sort(p[k : 2 * k]))
        za = np.asarray(embed([(phi[q], labels[m, q]) for m, q in zip(twice, first, strict=True)]))
        zb = np.asarray(embed([(phi[q], labels[m, q]) for m, q in zip(twice, second, strict=True)]))
        cross = np.linalg.norm(za[:, None, :] - zb[None, :, :], axis=-1)  # (T, T)
        same = np.diag(cross)
        distinct = cross[~np.eye(len(twice), dtype=bool)]
        out["same_tpr"] = tpr_at_fpr(same, distinct, max_fpr)
        out["same_pairs"], out["distinct_pairs"] = len(same), len(distinct)
        if response is not None:  # the same two samples per model, as 2T models of one registry
            rows = np.asarray([*twice, *twice])
            both = response(labels[rows], [*first, *second], grp, train_q)
            rc = both[: len(twice), len(twice) :]
            off = ~np.eye(len(twice), dtype=bool)
            out["same_tpr_response"] = tpr_at_fpr(np.diag(rc), rc[off], max_fpr)
    else:
        out["same_tpr"], out["same_pairs"], out["distinct_pairs"] = math.nan, 0, 0

    # every model scored on the same `probe` random train questions
    obs_all = ~np.isnan(labels[:, train_q])
    common = train_q[obs_all.all(axis=0)]
    if len(common) >= probe:
        pq = np.sort(rng.permutation(common)[:probe])
        zp = np.asarray(embed([(phi[pq], labels[m, pq]) for m in range(n_models)]), dtype=np.float64)
        dp = pairwise_distances(zp)
        obs_rate, obs_shared = disagreement_matrix(labels[:, pq].T)
        s = scale if scale is not None else fit_scale(dp[pairs], obs_rate[pairs])
        comb = combined_distance(dp, obs_rate, obs_shared.astype(np.float64), scale=s, prior=prior)
        out["probe_questions"] = len(pq)
        out["probe_observed_pearson"] = correlations(obs_rate[pairs], target)[0]
        out["probe_embedding_pearson"] = correlations(dp[pairs], target)[0]
        out["probe_combined_pearson"] = correlations(comb[pairs], target)[0]
        out["probe_acc_diff_pearson"] = correlations(
            np.abs(labels[:, pq].mean(1)[:, None] - labels[:, pq].mean(1)[None, :])[pairs], target
        )[0]
        out["probe_scale"] = s
        for n0 in (4.0, 16.0, 64.0):
            c = combined_distance(dp, obs_rate, obs_shared.astype(np.float64), scale=s, prior=n0)
            out[f"probe_combined_pearson_prior{int(n0)}"] = correlations(c[pairs], target)[0]
        if predict is not None:
            prof = np.asarray(predict(zp.astype(np.float32), phi[train_q]), dtype=np.float64).T  # (M, Q)
            pdist = np.abs(prof[:, None, :] - prof[None, :, :]).mean(-1)
            out["probe_profile_pearson"] = correlations(pdist[pairs], target)[0]
            for n0 in (4.0, 16.0, 64.0):
                c = combined_distance(pdist, obs_rate, obs_shared.astype(np.float64), scale=1.0, prior=n0)
                out[f"probe_profile_combined_pearson_prior{int(n0)}"] = correlations(c[pairs], target)[0]
        if response is not None:
            rp = response(labels, [pq] * n_models, grp, train_q)
            out["probe_response_pearson"] = correlations(rp[pairs], target)[0]
            c = combined_distance(rp, obs_rate, obs_shared.astype(np.float64), scale=1.0, prior=4.0)
            out["probe_response_combined_pearson"] = correlations(c[pairs], target)[0]
    return out


def draw_spread(
    embed: EmbedFn,
    labels: np.ndarray,
    phi: np.ndarray,
    train_q: np.ndarray,
    test_q: np.ndarray,
    *,
    k: int,
    seeds: Sequence[int],
    focus: np.ndarray | None = None,
    min_shared: int = 20,
    extra_vectors: dict[str, Callable[[list[np.ndarray]], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """`pearson`, `acc_diff_pearson` (and each `extra_vectors` baseline's) over several own-sample draws,
    one per seed, each the draw `geometry_report` makes with that seed: mean and standard deviation of
    each, and the paired gap of the embedding over the accuracy difference (mean, sd, draws where it is
    positive). One draw is not enough to call a source above or below a baseline: with few focus models
    (mmlu_pro's held-out five, 110 pairs) the gap moves by about 0.03 from one draw to the next."""
    rate, shared = disagreement_matrix(labels[:, test_q].T)
    pairs = pair_mask(labels.shape[0], focus, shared, min_shared)
    target = rate[pairs]
    per: dict[str, list[float]] = {"pearson": [], "acc_diff_pearson": []}
    per |= {f"{name}_pearson": [] for name in extra_vectors or {}}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        rng.permutation(len(test_q))  # the split-half draw geometry_report makes first
        samples = own_samples(labels, train_q, k, rng)
        z = np.asarray(embed([(phi[q], labels[m, q]) for m, q in enumerate(samples)]), dtype=np.float64)
        acc = np.array([labels[m, q].mean() if len(q) else np.nan for m, q in enumerate(samples)])
        per["pearson"].append(correlations(pairwise_distances(z)[pairs], target)[0])
        per["acc_diff_pearson"].append(correlations(np.abs(acc[:, None] - acc[None, :])[pairs], target)[0])
        for name, place in (extra_vectors or {}).items():
            v = pairwise_distances(np.asarray(place(samples), dtype=np.float64))
            per[f"{name}_pearson"].append(correlations(v[pairs], target)[0])
    out: dict[str, Any] = {"draws": len(seeds), "seeds": [int(s) for s in seeds]}
    for key, xs in per.items():
        x = np.asarray(xs)
        out[f"{key}_mean"] = float(np.mean(x))
        out[f"{key}_sd"] = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
    gap = np.asarray(per["pearson"]) - np.asarray(per["acc_diff_pearson"])
    out["gap_mean"] = float(gap.mean())
    out["gap_sd"] = float(np.std(gap, ddof=1)) if len(gap) > 1 else math.nan
    out["gap_positive"] = int((gap > 0).sum())
    return out
