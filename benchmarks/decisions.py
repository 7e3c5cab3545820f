"""Decision benchmarks on the shared real sources: the paper's portfolio, fallback and fingerprinting
experiments, plus routing / portfolio latency. Prints a table and writes benchmarks/results/decisions.json.

Protocol (per source): questions are split as `encoder.train.prepare_source(split_seed=0)` does; every
model is embedded from (a seeded sample of at most --max-evals of) its TRAIN-question evaluations; all
accuracies are measured on TEST questions. Nothing is tuned on test questions: portfolio and fallback
choices use embeddings only, and fingerprint thresholds are calibrated on train questions of one half
of the models and measured on the other half (on test questions where the test split holds 2 x 128 of
them, else on those models' train questions, which the thresholds never saw either).

Matched-question fingerprinting (what POST /v1/fingerprint judges on): both sides are embedded from
scores on the same questions. Thresholds (the shipped ones: all models, TRAIN questions only) come
from distinct models' matched distances on random shared samples of n train questions; they are
measured on TEST questions: FPR on distinct models' matched distances, TPR on simulated
re-evaluations (a model's own test scores with 0/2/5/10% of them flipped: the data hold no second run
of one model), and the real cases of one model under two names / providers / prompts.

    nice -n 10 python benchmarks/decisions.py --data /work/shared/data/lart /work/shared/data/mmlu_pro \
        /work/shared/data/zeroeval /work/shared/data/alpaca_eval_v2 [--checkpoint PATH] [--write-calibration]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoder.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from encoder.data import EvalSource, load_source  # noqa: E402
from encoder.inference import LocusEmbedder  # noqa: E402
from encoder.metrics import routing_hit_at_k  # noqa: E402
from encoder.query import QueryEncoder  # noqa: E402
from encoder.train import TrainSource, prepare_source  # noqa: E402
from registry.decisions import (  # noqa: E402
    FingerprintThresholds,
    calibrate_thresholds,
    constant_rows,
    distinct_matched_distances,
    flipped_distances,
    matched_distances,
    pairwise_distances,
    predicted_routing_accuracy,
    route,
    sample_pair_distances,
    save_calibration,
    select_portfolio,
)

log = logging.getLogger("benchmarks.decisions")

PAPER = {
    "portfolio": {
        "full_pool_hit1": 65.73,
        "k_center_15_hit1": 65.77,
        "k_medoids_20_hit1": 65.83,
        "random_15_hit1": "55.07 +- 3.9",
        "pool": "112 EmbedLLM models",
    },
    "fallback_retention_k1": 0.85,
    "nn_answer_agreement": 0.79,
    "fingerprint": "near-duplicates at cosine distance < 1e-5; re-samples of one model land on one point",
}
TARGETS = {
    "k_center_15pct_within_points": 1.0,
    "fallback_retention_k1": 0.85,
    "fingerprint_tpr": 0.95,
    "fingerprint_max_fpr": 0.01,
    "route_1_query_100_models_p50_ms": 50.0,
}
PROVIDER_SUFFIX = re.compile(r"(@[\w.-]+|-togetherai|-together|-fireworks|-hyperbolic|-sambanova)$")
PROMPT_SUFFIX = re.compile(r"(_zero_shot|_one_shot|_concise|_verbose)$")


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def checkpoint_training(path: Path) -> dict[str, Any] | None:
    """How the checkpoint was trained (from its training_report.json), so a result says what it measured."""
    report = path / "training_report.json"
    if not report.is_file():
        return None
    r = json.loads(report.read_text())
    keep = ("command", "git_commit", "best_step", "steps_run", "best_val_hit1", "train_config")
    return {k: r.get(k) for k in keep} | {"sources": [d.get("name") for d in r.get("data", [])]}


def variant_groups(names: Sequence[str]) -> tuple[list[str | None], list[tuple[int, int, str]]]:
    """Group rows that are one model (provider or prompt variants, by name); returns groups and pairs."""
    base = [PROMPT_SUFFIX.sub("", PROVIDER_SUFFIX.sub("", n)) for n in names]
    counts: dict[str, int] = {}
    for b in base:
        counts[b] = counts.get(b, 0) + 1
    groups: list[str | None] = [b if counts[b] > 1 else None for b in base]
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if groups[i] is not None and groups[i] == groups[j]:
                kind = (
                    "provider"
                    if PROVIDER_SUFFIX.search(names[i]) or PROVIDER_SUFFIX.search(names[j])
                    else "prompt"
                )
                pairs.append((i, j, kind))
    return groups, pairs


def train_sets(ts: TrainSource, max_evals: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each model's train-question evaluations (a seeded sample of at most max_evals), in question order."""
    rng = np.random.default_rng(seed)
    sets = []
    for m in range(ts.source.n_models):
        y = ts.source.labels[m, ts.split.train]
        q = ts.split.train[~np.isnan(y)]
        if len(q) > max_evals:
            q = np.sort(rng.choice(q, size=max_evals, replace=False))
        sets.append((ts.phi[q], ts.source.labels[m, q]))
    return sets


def question_sets(src: EvalSource, phi: np.ndarray, qs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for m in range(src.n_models):
        y = src.labels[m, qs]
        keep = qs[~np.isnan(y)]
        out.append((phi[keep], src.labels[m, keep]))
    return out


def portfolio_experiment(
    z: np.ndarray, p: np.ndarray, y: np.ndarray, k_max: int, draws: int, seed: int
) -> dict[str, Any]:
    """hit@1 of routing restricted to k models chosen by k-center, k-medoids and at random."""
    m = z.shape[0]
    full = routing_hit_at_k(p, y, 1)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, min(k_max, m) + 1):
        row: dict[str, Any] = {"k": k}
        for method in ("k-center", "k-medoids"):
            port = select_portfolio(z, method=method, k=k)
            s = list(port.chosen)
            row[method] = routing_hit_at_k(p[:, s], y[:, s], 1)
            row[f"{method}_predicted"] = predicted_routing_accuracy(p, s)
            row[f"{method}_radius"] = port.radius
        rand = [
            routing_hit_at_k(p[:, c], y[:, c], 1)
            for c in (rng.choice(m, k, replace=False) for _ in range(draws))
        ]
        rand = [r for r in rand if not math.isnan(r)]
        row["random_mean"] = float(np.mean(rand))
        row["random_sd"] = float(np.std(rand))
        rows.append(row)
    k15 = max(1, math.ceil(0.15 * m))
    port15 = select_portfolio(z, method="k-center", k=min(k15, m))
    hit15 = routing_hit_at_k(p[:, list(port15.chosen)], y[:, list(port15.chosen)], 1)
    return {
        "full_pool_hit1": full,
        "full_pool_predicted": predicted_routing_accuracy(p),
        "rows": rows,
        "k_center_15pct": {
            "k": k15,
            "hit1": hit15,
            "gap_points": 100 * (full - hit15),
            "meets_target": 100 * (full - hit15) <= TARGETS["k_center_15pct_within_points"],
        },
    }


def fallback_experiment(
    z: np.ndarray, p: np.ndarray, y: np.ndarray, k_max: int = 5, distance: np.ndarray | None = None
) -> dict[str, Any]:
    """Routing accuracy kept when the routed model is replaced by its k-th nearest labelled neighbour, by
    embedding distance or by the given (M, M) `distance`."""
    obs = ~np.isnan(y)
    keep = obs.any(axis=1)
    p, y, obs = p[keep], y[keep], obs[keep]
    routed = np.where(obs, p, -np.inf).argmax(axis=1)  # (Q,)
    base = float(y[np.arange(len(y)), routed].mean())
    d = pairwise_distances(z) if distance is None else np.array(distance, dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")  # (M, M) neighbours nearest first, self last
    out: dict[str, Any] = {"routed_hit1": base, "by_k": []}
    for k in range(1, k_max + 1):
        hits = []
        for qi, r in enumerate(routed):
            labelled = [j for j in order[r][:-1] if obs[qi, j]]
            if len(labelled) >= k:
                hits.append(y[qi, labelled[k - 1]])
        acc = float(np.mean(hits))
        out["by_k"].append({"k": k, "hit1": acc, "retention": acc / base, "queries": len(hits)})
    # what the router does when the preferred model is down: the next best by predicted P(correct)
    second = np.where(obs, p, -np.inf)
    second[np.arange(len(y)), routed] = -np.inf
    has2 = np.isfinite(second.max(axis=1))
    nb = second.argmax(axis=1)
    acc2 = float(y[np.arange(len(y)), nb][has2].mean())
    out["next_best_predicted"] = {"hit1": acc2, "retention": acc2 / base}
    rand = np.where(obs, y, np.nan)
    rand[np.arange(len(y)), routed] = np.nan
    out["random_other"] = {"retention": float(np.nanmean(np.nanmean(rand, axis=1)) / base)}
    # nearest neighbour's answer agreement with the model (paper: 79%)
    nn = order[:, 0]
    agree = []
    for i, j in enumerate(nn):
        both = obs[:, i] & obs[:, j]
        if both.sum() >= 20:
            agree.append(float(((y[both, i] >= 0.5) == (y[both, j] >= 0.5)).mean()))
    out["nn_answer_agreement"] = float(np.mean(agree))
    return out


def fingerprint_experiment(
    emb: LocusEmbedder, ts: TrainSource, n: int, repeats: int, seed: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Calibrate on train questions of half the models, measure TPR/FPR on the other half."""
    src = ts.source
    groups, pairs = variant_groups(src.model_names)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(src.n_models)
    cal, ev = np.sort(perm[: src.n_models // 2]), np.sort(perm[src.n_models // 2 :])
    train_sets = question_sets(src, ts.phi, ts.split.train)
    cal_sample = sample_pair_distances(
        [train_sets[i] for i in cal],
        emb.embed,
        n=n,
        repeats=repeats,
        groups=[groups[i] for i in cal],
        seed=seed,
    )
    th = calibrate_thresholds(cal_sample.same, cal_sample.distinct, n_evaluations=n)
    test_sets = question_sets(src, ts.phi, ts.split.test)
    enough = sum(len(test_sets[i][1]) >= 2 * n for i in ev)
    use_test = enough >= 2
    ev_sets = test_sets if use_test else train_sets
    ev_sample = sample_pair_distances(
        [ev_sets[i] for i in ev],
        emb.embed,
        n=n,
        repeats=repeats,
        groups=[groups[i] for i in ev],
        seed=seed + 1,
    )
    res: dict[str, Any] = {
        "thresholds_from_half": {
            "same": th.same,
            "related": th.related,
            "cal_tpr": th.tpr,
            "cal_fpr": th.fpr,
        },
        "measured_on": "test questions, held-out half of models"
        if use_test
        else "train questions of the held-out half of models (test split has < 2n questions)",
        "tpr": float((ev_sample.same < th.same).mean()),
        "fpr": float((ev_sample.distinct < th.same).mean()),
        "same_pairs": len(ev_sample.same),
        "distinct_pairs": len(ev_sample.distinct),
        "same_distance_median": float(np.median(ev_sample.same)),
        "distinct_distance_p01": float(np.quantile(ev_sample.distinct, 0.01)),
        "distinct_distance_median": float(np.median(ev_sample.distinct)),
    }
    # rows that are one model served by several providers / under several prompts: disjoint samples
    vres = []
    for i, j, kind in pairs:
        si, sj = test_sets[i], test_sets[j]
        if len(si[1]) < n or len(sj[1]) < n:  # too few test questions: train questions, never calibrated on
            si, sj = train_sets[i], train_sets[j]
        verdicts = []
        for r in range(repeats):
            g = np.random.default_rng(seed + 100 + r)
            a = np.sort(g.choice(len(si[1]), n, replace=False))
            b = np.sort(g.choice(len(sj[1]), n, replace=False))
            za, zb = emb.embed([(si[0][a], si[1][a]), (sj[0][b], sj[1][b])])
            verdicts.append(th.verdict(float(np.linalg.norm(za - zb))))
        vres.append(
            {
                "a": src.model_names[i],
                "b": src.model_names[j],
                "kind": kind,
                "verdicts": {v: verdicts.count(v) for v in ("same", "related", "different")},
            }
        )
    provider = [v for v in vres if v["kind"] == "provider"]
    prompt = [v for v in vres if v["kind"] == "prompt"]

    def share(rows: list[dict[str, Any]], verdict: str) -> float | None:
        total = sum(sum(r["verdicts"].values()) for r in rows)
        return sum(r["verdicts"][verdict] for r in rows) / total if total else None

    res["provider_variants"] = {
        "pairs": [(v["a"], v["b"]) for v in provider],
        "same_rate": share(provider, "same"),
        "same_or_related_rate": None
        if not provider
        else (share(provider, "same") or 0) + (share(provider, "related") or 0),
        "detail": provider,
    }
    res["prompt_variants"] = {
        "pairs": len(prompt),
        "same_rate": share(prompt, "same"),
        "related_rate": share(prompt, "related"),
        "different_rate": share(prompt, "different"),
    }
    same, distinct = calibration_sample(emb, ts, n, repeats, seed)
    return res, same, distinct


def calibration_sample(
    emb: LocusEmbedder, ts: TrainSource, n: int, repeats: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """For the checkpoint-wide calibration: all models of this source, train questions only."""
    groups, _ = variant_groups(ts.source.model_names)
    train_sets = question_sets(ts.source, ts.phi, ts.split.train)
    full = sample_pair_distances(train_sets, emb.embed, n=n, repeats=repeats, groups=groups, seed=seed + 2)
    return full.same, full.distinct


def matched_calibration_sample(
    emb: LocusEmbedder, ts: TrainSource, n: int, max_pairs: int, flip_rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Matched-question calibration: all models of this source, train questions only.

    Returns (flipped re-evaluation distances at flip_rate, distinct-model matched distances)."""
    groups, _ = variant_groups(ts.source.model_names)
    q = ts.split.train
    labels, phi = ts.source.labels[:, q], ts.phi[q]
    distinct = distinct_matched_distances(
        labels, phi, emb.embed, n=n, groups=groups, max_pairs=max_pairs, seed=seed + 3
    )
    same = flipped_distances(labels, phi, emb.embed, n=n, flip_rate=flip_rate, seed=seed + 4)
    return same, distinct


FLIP_RATES = (0.0, 0.02, 0.05, 0.10)


def disagreement_floor(
    labels: np.ndarray, groups: Sequence[str | None], n: int, seed: int
) -> dict[str, float]:
    """How often distinct models' scores differ on n shared questions (no encoder involved): a
    re-evaluation whose noise exceeds the 1% quantile cannot be told from a distinct model at FPR 1%
    by comparing the two score vectors' disagreement."""
    obs = ~np.isnan(labels)
    const = constant_rows(labels)
    rng = np.random.default_rng(seed + 8)
    d = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if (groups[i] is not None and groups[i] == groups[j]) or const[i] == const[j]:
                continue
            shared = np.flatnonzero(obs[i] & obs[j])
            if len(shared) >= n:
                q = rng.choice(shared, n, replace=False)
                d.append(float(np.mean(np.abs(labels[i, q] - labels[j, q]))))
    return {
        "distinct_disagreement_p01": float(np.quantile(d, 0.01)),
        "distinct_disagreement_p05": float(np.quantile(d, 0.05)),
        "distinct_disagreement_median": float(np.median(d)),
    }


def matched_experiment(
    emb: LocusEmbedder,
    ts: TrainSource,
    th: FingerprintThresholds,
    n: int,
    max_pairs: int,
    min_shared: int,
    seed: int,
) -> dict[str, Any]:
    """Matched-question TPR / FPR on TEST questions with the shipped (train-question) thresholds."""
    src = ts.source
    groups, pairs = variant_groups(src.model_names)
    q = ts.split.test
    labels, phi = src.labels[:, q], ts.phi[q]
    n_eval = min(n, len(q))
    distinct = distinct_matched_distances(
        labels, phi, emb.embed, n=n_eval, groups=groups, max_pairs=max_pairs, seed=seed + 5
    )
    out: dict[str, Any] = {
        "n_questions": n_eval,
        "measured_on": "test questions (thresholds from train questions)",
        "fpr": float((distinct < th.same).mean()),
        "distinct_pairs": len(distinct),
        "distinct_identical_scores": float((distinct == 0).mean()),
        "constant_score_models": int((~np.isnan(constant_rows(labels))).sum()),
        "distinct_distance_p01": float(np.quantile(distinct, 0.01)),
        "distinct_distance_median": float(np.median(distinct)),
        "tpr_by_flip_rate": {},
        **disagreement_floor(labels, groups, n_eval, seed),
    }
    for rate in FLIP_RATES:
        same = flipped_distances(labels, phi, emb.embed, n=n_eval, flip_rate=rate, repeats=2, seed=seed + 6)
        out["tpr_by_flip_rate"][str(rate)] = {
            "tpr": float((same < th.same).mean()),
            "same_or_related": float((same < th.related).mean()),
            "pairs": len(same),
            "distance_median": float(np.median(same)),
        }
    # real cases: one model under two names / providers / prompts, on their shared test questions
    obs = ~np.isnan(labels)
    rows, sets = [], []
    for i, j, kind in pairs:
        shared = np.flatnonzero(obs[i] & obs[j])
        if len(shared) < min_shared:
            continue
        pick = np.sort(np.random.default_rng(seed + 7 + i * 1000 + j).permutation(shared)[:n_eval])
        sets.append(((phi[pick], labels[i, pick]), (phi[pick], labels[j, pick])))
        rows.append(
            {
                "a": src.model_names[i],
                "b": src.model_names[j],
                "kind": kind,
                "shared_questions": len(pick),
                "agreement": float((labels[i, pick] == labels[j, pick]).mean()),
            }
        )
    if sets:
        for r, d in zip(rows, matched_distances(sets, emb.embed), strict=True):
            r["matched_distance"] = float(d)
            r["verdict"] = th.verdict(float(d))
    out["provider_variants"] = [r for r in rows if r["kind"] == "provider"]
    prompt = [r for r in rows if r["kind"] == "prompt"]
    out["prompt_variants"] = {
        "pairs": len(prompt),
        **{
            f"{v}_rate": float(np.mean([r["verdict"] == v for r in prompt])) if prompt else None
            for v in ("same", "related", "different")
        },
        "agreement_median": float(np.median([r["agreement"] for r in prompt])) if prompt else None,
    }
    return out


def latency(emb: LocusEmbedder, z_real: np.ndarray, texts: Sequence[str], reps: int) -> dict[str, Any]:
    """Route 1 / 100 new queries over 100 models (query encoding included); portfolios on synthetic pools."""
    rng = np.random.default_rng(0)
    z100 = z_real[rng.choice(len(z_real), 100, replace=len(z_real) < 100)]
    z100 = z100 + (len(z_real) < 100) * rng.normal(scale=1e-3, size=z100.shape).astype(np.float32)
    qenc = QueryEncoder()  # no disk cache: every text is new to it
    emb.query_encoder = qenc
    out: dict[str, Any] = {}
    counter = 0
    for nq in (1, 100):
        times = []
        for _ in range(reps if nq == 1 else max(3, reps // 6)):  # 100 new texts per repetition: fewer
            batch = [f"{texts[(counter + i) % len(texts)]} (variant {counter + i})" for i in range(nq)]
            counter += nq
            t0 = time.perf_counter()
            phi = emb.encode_queries(batch)
            p = emb.predict(z100, phi)
            route(p, prices=np.linspace(0.1, 10.0, 100), cost_weight=0.1, top_k=3)
            times.append(1000 * (time.perf_counter() - t0))
        out[f"route_{nq}_queries_100_models_ms"] = {
            "p50": float(np.median(times)),
            "p95": float(np.quantile(times, 0.95)),
        }
    out["portfolio_synthetic"] = "pools of synthetic 128-d vectors (Gaussian mixture); latency only"
    for n_models in (1000, 10000):
        centres = rng.normal(scale=3.0, size=(50, 128))
        x = (centres[rng.integers(50, size=n_models)] + rng.normal(size=(n_models, 128))).astype(np.float32)
        for method in ("k-center", "k-medoids", "coverage-greedy"):
            t0 = time.perf_counter()
            select_portfolio(x, method=method, k=15)
            out[f"portfolio_{method}_{n_models}_models_k15_ms"] = 1000 * (time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/locus-registry/query")
    ap.add_argument("--max-evals", type=int, default=1024, help="train evaluations per model embedding")
    ap.add_argument("--k-max", type=int, default=25)
    ap.add_argument("--random-draws", type=int, default=20)
    ap.add_argument("--fp-n", type=int, default=128)
    ap.add_argument("--fp-repeats", type=int, default=3)
    ap.add_argument("--latency-reps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    ap.add_argument(
        "--calibration-only",
        action="store_true",
        help="only calibrate fingerprint thresholds (with --write-calibration: write them); no results JSON",
    )
    ap.add_argument("--fp-max-pairs", type=int, default=1500, help="distinct pairs per source (matched)")
    ap.add_argument("--fp-flip-rate", type=float, default=0.05, help="flip rate of the calibration's TPR")
    ap.add_argument("--fp-min-shared", type=int, default=32, help="as the API's min_shared")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/decisions.json")
    ap.add_argument(
        "--write-calibration",
        action="store_true",
        help="write fingerprint thresholds (train questions of all models) to <checkpoint>/calibration.json",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    qenc = QueryEncoder(cache_dir=args.cache_dir)
    emb = LocusEmbedder.from_checkpoint(args.checkpoint, qenc)
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "git_commit": git_commit(),
        "checkpoint": str(args.checkpoint),
        "checkpoint_fingerprint": emb.fingerprint,
        "checkpoint_training": checkpoint_training(args.checkpoint),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "data"},
        "protocol": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "paper": PAPER,
        "targets": TARGETS,
        "sources": {},
    }
    all_same, all_distinct, m_same, m_distinct = [], [], [], []
    prepared: list[TrainSource] = []
    z_for_latency, texts_for_latency = None, None
    for path in args.data:
        src = load_source(path)
        log.info("%s: %d models x %d questions", src.name, src.n_models, src.n_questions)
        phi = qenc.encode(list(src.texts))
        ts = prepare_source(src, phi, split_seed=0)
        log.info("%s: matched-question calibration sample (train questions)", src.name)
        ms, md = matched_calibration_sample(
            emb, ts, args.fp_n, args.fp_max_pairs, args.fp_flip_rate, args.seed
        )
        m_same.append(ms)
        m_distinct.append(md)
        if args.calibration_only:
            same, distinct = calibration_sample(emb, ts, args.fp_n, args.fp_repeats, args.seed)
            all_same.append(same)
            all_distinct.append(distinct)
            continue
        t0 = time.perf_counter()
        z = emb.embed(train_sets(ts, args.max_evals, args.seed))
        embed_s = time.perf_counter() - t0
        q = ts.split.test
        p = emb.predict(z, phi[q]).astype(np.float64)  # (Q, M)
        y = src.labels[:, q].T  # (Q, M) NaN where unlabelled
        log.info("%s: embedded %d models in %.1fs; portfolio", src.name, src.n_models, embed_s)
        # portfolios are chosen where the service chooses them: the predictor's space
        port = portfolio_experiment(emb.predictor_space(z), p, y, args.k_max, args.random_draws, args.seed)
        log.info("%s: fallback", src.name)
        fb = fallback_experiment(z, p, y)
        log.info("%s: fingerprinting", src.name)
        fp, same, distinct = fingerprint_experiment(emb, ts, args.fp_n, args.fp_repeats, args.seed)
        all_same.append(same)
        all_distinct.append(distinct)
        results["sources"][src.name] = {
            "models": src.n_models,
            "test_questions": len(q),
            "train_questions": len(ts.split.train),
            "portfolio": port,
            "fallback": fb,
            "fingerprint": fp,
        }
        prepared.append(ts)
        if z_for_latency is None or len(z) > len(z_for_latency):
            z_for_latency, texts_for_latency = z, [src.texts[i] for i in q]
    th = calibrate_thresholds(
        np.concatenate(all_same),
        np.concatenate(all_distinct),
        n_evaluations=args.fp_n,
        notes={
            "how": "disjoint random samples of n train-question evaluations per model (repeats per model); "
            "same = two samples of one model, distinct = samples of two models of one source that are not "
            "name variants of one model; `same` keeps FPR <= max_fpr on distinct pairs, `related` is the "
            "related_quantile of distinct-pair distances",
            "sources": [str(p) for p in args.data],
            "checkpoint_fingerprint": emb.fingerprint,
            "split": "encoder.train.prepare_source(split_seed=0) train questions only",
            "command": results["command"],
            "git_commit": results["git_commit"],
        },
    )
    mth = calibrate_thresholds(
        np.concatenate(m_same),
        np.concatenate(m_distinct),
        n_evaluations=args.fp_n,
        notes={
            "how": "matched questions: both sides embedded from their scores on the same n train questions "
            "(sorted by question id); distinct = two models of one source that are not name variants, on a "
            "random sample of n questions both were scored on (at most max_pairs pairs per source); "
            "`same` keeps FPR <= max_fpr on them, `related` is their related_quantile; tpr/n_same_pairs: "
            "each model's own n scores against the same scores with flip_rate of them flipped",
            "flip_rate": args.fp_flip_rate,
            "max_pairs": args.fp_max_pairs,
            "sources": [str(p) for p in args.data],
            "checkpoint_fingerprint": emb.fingerprint,
            "split": "encoder.train.prepare_source(split_seed=0) train questions only",
            "command": results["command"],
            "git_commit": results["git_commit"],
        },
    )
    results["calibration"] = th.to_dict()
    results["calibration_matched"] = mth.to_dict()
    if args.write_calibration:
        save_calibration(args.checkpoint / "calibration.json", th, mth)
        log.info("wrote %s", args.checkpoint / "calibration.json")
    if args.calibration_only:
        print(json.dumps({"global": th.to_dict(), "matched": mth.to_dict()}, indent=2))
        return 0
    for ts in prepared:
        log.info("%s: matched-question fingerprinting (test questions)", ts.source.name)
        results["sources"][ts.source.name]["fingerprint"]["matched"] = matched_experiment(
            emb, ts, mth, args.fp_n, args.fp_max_pairs, args.fp_min_shared, args.seed
        )
    assert z_for_latency is not None and texts_for_latency is not None
    if not args.no_latency:
        log.info("latency")
        results["latency"] = latency(emb, z_for_latency, texts_for_latency, args.latency_reps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


def print_table(r: dict[str, Any]) -> None:
    """A compact table of the measured numbers beside the paper's and the issue's targets."""
    print(f"\nLOCUS decisions benchmark (checkpoint {r['checkpoint_fingerprint']}), test questions")
    print(
        f"{'source':<16}{'M':>4} {'full':>6} {'kc@15%':>7} {'gap':>6} {'kc15':>6} {'km20':>6} "
        f"{'rnd15':>12} {'fb@1':>6} {'nxt':>6} {'nnAgr':>6} {'TPR':>6} {'FPR':>6}"
    )
    for name, s in r["sources"].items():
        rows = {row["k"]: row for row in s["portfolio"]["rows"]}
        k15 = rows.get(15, rows[max(rows)])
        k20 = rows.get(20, rows[max(rows)])
        pct = s["portfolio"]["k_center_15pct"]
        fb = s["fallback"]
        fp = s["fingerprint"]
        print(
            f"{name:<16}{s['models']:>4} {100 * s['portfolio']['full_pool_hit1']:6.2f} "
            f"{100 * pct['hit1']:7.2f} "
            f"{pct['gap_points']:6.2f} {100 * k15['k-center']:6.2f} {100 * k20['k-medoids']:6.2f} "
            f"{100 * k15['random_mean']:6.2f}±{100 * k15['random_sd']:4.1f} "
            f"{fb['by_k'][0]['retention']:6.3f} {fb['next_best_predicted']['retention']:6.3f} "
            f"{fb['nn_answer_agreement']:6.3f} {fp['tpr']:6.3f} {fp['fpr']:6.3f}"
        )
    print(
        f"{'paper (EmbedLLM)':<16}{112:>4} {65.73:6.2f} {'':>7} {'':>6} {65.77:6.2f} {65.83:6.2f} "
        f"{'55.07±3.9':>12} {0.85:6.3f} {'':>6} {0.79:6.3f}"
    )
    lat = r.get("latency", {})
    print(
        "\nlatency (ms): "
        + ", ".join(
            f"{k}={v['p50']:.1f} p50" if isinstance(v, dict) else f"{k}={v:.0f}"
            for k, v in lat.items()
            if k != "portfolio_synthetic"
        )
    )
    c = r["calibration"]
    print(
        f"fingerprint thresholds (n={c['n_evaluations']}): same < {c['same']:.4f}, "
        f"related < {c['related']:.4f} "
        f"(calibration TPR {c['tpr']:.3f}, FPR {c['fpr']:.3f})"
    )
    m = r["calibration_matched"]
    print(
        f"matched-question thresholds (n={m['n_evaluations']}): same < {m['same']:.4f}, "
        f"related < {m['related']:.4f} (train: FPR {m['fpr']:.3f}, TPR at "
        f"{100 * m['notes']['flip_rate']:.0f}% flips {m['tpr']:.3f})"
    )
    print("\nfingerprinting: disjoint 128-samples (global) vs matched questions, test questions")
    flips = "".join(f"{'TPR@' + str(int(100 * f)) + '%':>9}" for f in FLIP_RATES)
    print(
        f"{'source':<16}{'n':>4} {'disjTPR':>8} {'disjFPR':>8} {'mFPR':>7}{flips} {'ident':>7} {'dis@p01':>8}"
    )
    for name, s in r["sources"].items():
        fp = s["fingerprint"]
        mt = fp["matched"]
        tprs = "".join(f"{mt['tpr_by_flip_rate'][str(f)]['tpr']:9.3f}" for f in FLIP_RATES)
        print(
            f"{name:<16}{mt['n_questions']:>4} {fp['tpr']:8.3f} {fp['fpr']:8.3f} {mt['fpr']:7.3f}{tprs} "
            f"{mt['distinct_identical_scores']:7.3f} {mt['distinct_disagreement_p01']:8.3f}"
        )
    print(
        "ident: share of distinct-model pairs with identical scores on the sample (pairs of models with one "
        "constant score everywhere are left out); dis@p01: 1% quantile of distinct pairs' score disagreement "
        "on n questions (re-evaluation noise above it cannot meet FPR 1%)"
    )
    for name, s in r["sources"].items():
        mt = s["fingerprint"]["matched"]
        if mt["constant_score_models"]:
            print(f"  {name}: {mt['constant_score_models']} rows score one constant on every test question")
        for v in mt["provider_variants"]:
            print(
                f"  {name}: {v['a']} vs {v['b']}: matched distance {v['matched_distance']:.4f} on "
                f"{v['shared_questions']} questions (agreement {v['agreement']:.3f}) -> {v['verdict']}"
            )
        pv = mt["prompt_variants"]
        if pv["pairs"]:
            print(
                f"  {name}: {pv['pairs']} prompt-variant pairs: same {pv['same_rate']:.2f}, "
                f"related {pv['related_rate']:.2f}, different {pv['different_rate']:.2f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
