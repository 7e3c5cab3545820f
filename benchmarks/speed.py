"""Inference speed of the encoder on this machine's CPU: medians over repeated runs.

- embed: 112 models x 1024 evaluations each -> 112 embeddings (`LocusEmbedder.embed`)
- score: 3,000 queries x 112 models -> (3000, 112) probabilities (`LocusEmbedder.predict`)
- encode: 1,000 question texts with the query encoder, uncached (the cache is emptied before each run)

Uses the shipped checkpoint when it exists, else a random-init model of the default config (the same
cost: speed does not depend on the weights); the JSON says which.

Run from the repository root:
    nice -n 10 python -m benchmarks.speed --texts /work/shared/data/mmlu_pro
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import median_seconds, provenance, write_json
from encoder.checkpoint import DEFAULT_CHECKPOINT
from encoder.config import LocusConfig
from encoder.data import load_source
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.query import EncodingCache, QueryEncoder

TARGETS_S = {"embed": 1.0, "score": 0.3}


def build_embedder(checkpoint: Path) -> tuple[LocusEmbedder, str]:
    if (checkpoint / "model.safetensors").is_file():
        return LocusEmbedder.from_checkpoint(checkpoint), f"checkpoint {checkpoint}"
    torch.manual_seed(0)
    return LocusEmbedder(LocusModel(LocusConfig())), "random-init model of the default LocusConfig"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--models", type=int, default=112)
    ap.add_argument("--evals", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--n-texts", type=int, default=1000)
    ap.add_argument("--texts", type=Path, default=Path("/work/shared/data/mmlu_pro"), help="source of texts")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--text-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    embedder, which = build_embedder(args.checkpoint)
    d = embedder.query_dim
    rng = np.random.default_rng(0)
    sets = []
    for _ in range(args.models):
        phi = rng.normal(size=(args.evals, d)).astype(np.float32)
        phi /= np.linalg.norm(phi, axis=1, keepdims=True)
        sets.append((phi, (rng.random(args.evals) < 0.6).astype(np.float32)))
    z = embedder.embed(sets)
    queries = rng.normal(size=(args.queries, d)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    results: dict[str, Any] = {
        "embed": median_seconds(lambda: embedder.embed(sets), repeats=args.repeats),
        "score": median_seconds(lambda: embedder.predict(z, queries), repeats=args.repeats),
    }

    texts = load_source(args.texts).texts[: args.n_texts]
    encoder = QueryEncoder(embedder.query_model, cache_dir=None)

    def encode_uncached() -> None:
        encoder.cache = EncodingCache(None)  # forget every earlier encoding
        encoder.encode(texts)

    results["encode"] = median_seconds(encode_uncached, repeats=args.text_repeats)
    results["encode"]["texts"] = len(texts)
    results["encode"]["mean_chars"] = float(np.mean([len(t) for t in texts]))

    doc = {
        **provenance(),
        "model": which,
        "fingerprint": embedder.fingerprint,
        "n_parameters": embedder.model.n_parameters(),
        "workload": {
            "embed": f"{args.models} models x {args.evals} evaluations",
            "score": f"{args.queries} queries x {args.models} models",
            "encode": f"{len(texts)} texts from {args.texts} with {embedder.query_model}, uncached",
        },
        "targets_s": TARGETS_S,
        "results": results,
    }
    write_json(args.out, doc)
    print(f"model: {which} ({doc['n_parameters']:,} parameters), torch threads {torch.get_num_threads()}")
    print(f"{'workload':<48}{'median s':>10}{'min s':>10}{'target s':>10}")
    for key in ("embed", "score", "encode"):
        r = results[key]
        target = TARGETS_S.get(key)
        print(
            f"{doc['workload'][key][:47]:<48}{r['median_s']:>10.3f}{r['min_s']:>10.3f}"
            f"{(f'{target:.2f}' if target else '-'):>10}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
