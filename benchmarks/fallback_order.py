"""Fallback order: which neighbour keeps the routed model's accuracy when it goes down?

On each shared source, every model is known by its own random K train-question evaluations (as users
register them). Test queries are routed by the predictor (shipped checkpoint) to the best labelled
model; that model is then replaced by its k-th nearest labelled neighbour under each ordering, and the
routing accuracy kept is reported (`benchmarks.decisions.fallback_experiment`, retention = hit@1 of the
neighbour / hit@1 of the routed model):

- embedding: Euclidean distance of the LOCUS embeddings (the shipped checkpoint was trained on these
  sources, so this ordering is in-distribution: flattering to it);
- response: the item-response distance (`registry.item_response`, categories as groups);
- behaviour: what `similar` and fallbacks rank by, the response distance worth 4 questions combined with
  the observed disagreement on the sampled questions both share
  (`registry.services.similarity.PRIOR_QUESTIONS`);
- oracle: true disagreement on the test questions themselves (the best any ordering could do).

Read it with `routed_models` / `top_routed_share`: queries are routed to a few strong models, so the
retention at rank k reads the k-th neighbour of those few, a handful of choices.

    python -m benchmarks.fallback_order --data ../shared/data/{lart,mmlu_pro,zeroeval,alpaca_eval_v2}
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import ROOT, load_sources, provenance, write_json
from benchmarks.decisions import fallback_experiment
from encoder.checkpoint import DEFAULT_CHECKPOINT
from encoder.geometry import own_samples
from encoder.inference import LocusEmbedder
from encoder.metrics import disagreement_matrix
from encoder.train import prepare_source
from registry.item_response import response_distances
from registry.services.similarity import PRIOR_QUESTIONS

log = logging.getLogger("benchmarks.fallback_order")
ORDERS = ("embedding", "response", "behaviour", "oracle")


def observed(labels: np.ndarray, samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(M, M) mean |score difference| on the sampled questions two models share, and how many they share."""
    m = len(samples)
    rate, shared = np.zeros((m, m)), np.zeros((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            common = np.intersect1d(samples[a], samples[b], assume_unique=True)
            if len(common):
                rate[a, b] = rate[b, a] = float(np.abs(labels[a, common] - labels[b, common]).mean())
                shared[a, b] = shared[b, a] = len(common)
    return rate, shared


def source_report(
    emb: LocusEmbedder, src: Any, phi: np.ndarray, k: int, seed: int, k_max: int
) -> dict[str, Any]:
    ts = prepare_source(src, phi, split_seed=seed)
    labels, train_q, test_q = src.labels, ts.split.train, ts.split.test
    samples = own_samples(labels, train_q, k, np.random.default_rng(seed))
    z = emb.embed([(phi[q], labels[m, q]) for m, q in enumerate(samples)])
    p = emb.predict(z, phi[test_q]).astype(np.float64)  # (Q, M)
    y = labels[:, test_q].T
    groups = np.unique(np.asarray(src.categories), return_inverse=True)[1]
    resp = response_distances(labels, samples, groups, train_q)
    obs, n = observed(labels, samples)
    behaviour = (PRIOR_QUESTIONS * resp + n * obs) / (PRIOR_QUESTIONS + n)
    truth, shared = disagreement_matrix(y)
    oracle = np.where(shared > 0, truth, np.inf)
    obs = ~np.isnan(y)
    routed = np.where(obs, p, -np.inf).argmax(axis=1)[obs.any(axis=1)]
    counts = np.bincount(routed, minlength=src.n_models)
    out: dict[str, Any] = {
        "models": src.n_models,
        "k": k,
        "routed_models": int((counts > 0).sum()),  # how many models the queries were routed to
        "top_routed_share": float(counts.max() / max(1, counts.sum())),
        "orders": {},
    }
    for name, d in (("embedding", None), ("response", resp), ("behaviour", behaviour), ("oracle", oracle)):
        out["orders"][name] = fallback_experiment(z, p, y, k_max, distance=d)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="source folders")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--k", type=int, default=128, help="own random train evaluations per model")
    ap.add_argument("--k-max", type=int, default=3, help="fallback ranks reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fallback_order.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    emb = LocusEmbedder.from_checkpoint(args.checkpoint)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    doc: dict[str, Any] = {"provenance": provenance(), "config": config, "sources": {}}
    for src, phi in load_sources(args.data):
        log.info("%s: %d models", src.name, src.n_models)
        doc["sources"][src.name] = source_report(emb, src, phi, args.k, args.seed, args.k_max)
    write_json(args.out, doc)
    print(
        f"{'source':<16} {'k':>2} "
        + " ".join(f"{o:>10}" for o in ORDERS)
        + f" {'next-pred':>10} {'random':>10}"
    )
    for name, s in doc["sources"].items():
        orders = s["orders"]
        for i in range(args.k_max):
            cells = " ".join(f"{orders[o]['by_k'][i]['retention']:>10.3f}" for o in ORDERS)
            e = orders["embedding"]
            nxt, rnd = e["next_best_predicted"]["retention"], e["random_other"]["retention"]
            tail = f" {nxt:>10.3f} {rnd:>10.3f}" if i == 0 else ""
            print(f"{name:<16} {i + 1:>2} {cells}{tail}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
