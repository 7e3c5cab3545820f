"""Cost of decisions restricted to one provenance, against the same decisions on every evaluation.

A real source's questions are split in two halves, each imported as its own wide CSV (two provenance
records: tasks `a` and `b`), so every model holds scores of both. Then each decision runs unrestricted,
restricted to task `a` with a cold cache (every compared model re-embedded from its task-a scores) and
restricted with a warm cache (`registry.services.provenance` caches the re-embedded vectors per
process until the scores change). Shipped encoder, SQLite file, local Qdrant, one torch thread.

    python -m benchmarks.provenance --data ../shared/data/lart [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import QUERY_CACHE, ROOT, median_seconds, provenance, write_json
from encoder.checkpoint import DEFAULT_CHECKPOINT
from encoder.data import load_source
from encoder.inference import LocusEmbedder
from encoder.query import QueryEncoder
from registry import importers, services
from registry.db import make_engine, make_session_factory
from registry.decisions import service
from registry.decisions.schemas import (
    FingerprintRequest,
    PortfolioFilters,
    PortfolioRequest,
    ReferenceQueries,
)
from registry.schemas import EvaluationFilter, EvaluationIn
from registry.services import Context
from registry.services import provenance as prov_service
from registry.tables import Base
from registry.vectors import QdrantIndex


def write_half(
    root: Path, task: str, ids: list[str], texts: list[str], models: list[str], y: np.ndarray
) -> Path:
    """A wide CSV (model, one column per question id) with its questions.csv, for one task."""
    d = root / task
    d.mkdir()
    with (d / "questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question_id", "text", "category"])
        w.writerows([q, t, task] for q, t in zip(ids, texts, strict=True))
    with (d / f"{task}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", *ids])
        for m, row in zip(models, y, strict=True):
            w.writerow([m, *["" if np.isnan(v) else f"{v:g}" for v in row]])
    return d / f"{task}.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a source in the normalised layout (e.g. shared/data/lart)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "provenance.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    source = load_source(args.data)
    half = len(source.question_ids) // 2
    emb = LocusEmbedder.from_checkpoint(DEFAULT_CHECKPOINT, QueryEncoder(cache_dir=QUERY_CACHE))
    with tempfile.TemporaryDirectory(prefix="locus-prov-bench-") as tmp:
        root = Path(tmp)
        engine = make_engine(f"sqlite:///{root / 'registry.db'}")
        Base.metadata.create_all(engine)
        index = QdrantIndex(path=str(root / "qdrant"))
        ctx = Context(session_factory=make_session_factory(engine), index=index, embedder=emb)
        ctx.ensure_collections()
        t = time.perf_counter()
        for task, cols in (("a", slice(0, half)), ("b", slice(half, None))):
            path = write_half(
                root,
                task,
                source.question_ids[cols],
                source.texts[cols],
                source.model_names,
                source.labels[:, cols],
            )
            services.import_batch(ctx, importers.read(path, "wide-csv"))
        import_s = time.perf_counter() - t
        ids = {m.name: m.id for m in services.list_models(ctx, None, limit=1000).items}
        target, other = ids[source.model_names[0]], ids[source.model_names[1]]
        only_a = EvaluationFilter(tasks=["a"])
        thresholds = service.ThresholdProvider(DEFAULT_CHECKPOINT / service.CALIBRATION_FILE)
        ref = ReferenceQueries(limit=200)
        sub = [
            EvaluationIn(question=f"a:{q}", score=float(y))
            for q, y in zip(source.question_ids[:half], source.labels[1, :half], strict=True)
            if not np.isnan(y)
        ]
        cases: dict[str, Callable[[EvaluationFilter | None], object]] = {
            "similar k=10": lambda p: services.similar_models(ctx, target, k=10, provenance=p),
            "fallbacks k=5": lambda p: service.fallbacks(ctx, target, 5, reference=ref, provenance=p),
            "compare": lambda p: service.compare(ctx, target, other, thresholds, provenance=p),
            "portfolio k=10": lambda p: service.portfolio(
                ctx, PortfolioRequest(k=10, filters=PortfolioFilters(status=[]), reference=ref, provenance=p)
            ),
            "fingerprint": lambda p: service.fingerprint(
                ctx, FingerprintRequest(evaluations=sub, provenance=p), thresholds
            ),
        }
        results: dict[str, Any] = {}
        for name, fn in cases.items():

            def every(fn: Callable[[EvaluationFilter | None], object] = fn) -> object:
                return fn(None)

            def cold(fn: Callable[[EvaluationFilter | None], object] = fn) -> object:
                prov_service._CACHES.clear()  # every compared model re-embedded
                return fn(only_a)

            def warm(fn: Callable[[EvaluationFilter | None], object] = fn) -> object:
                return fn(only_a)

            results[name] = {
                "all": median_seconds(every, repeats=args.repeats),
                "task_a_cold": median_seconds(cold, repeats=args.repeats),
                "task_a_warm": median_seconds(warm, repeats=args.repeats),
            }
            r = results[name]
            ms = {k: v["median_s"] * 1e3 for k, v in r.items()}
            print(
                f"{name:16s} all {ms['all']:8.1f} ms   task=a cold {ms['task_a_cold']:8.1f} ms   "
                f"warm {ms['task_a_warm']:8.1f} ms"
            )
        index.close()
        engine.dispose()
    write_json(
        args.out,
        {
            "benchmark": "provenance-restricted decisions",
            "source": source.name,
            "models": len(source.model_names),
            "questions_per_task": half,
            "import_s": import_s,
            "results": results,
            "provenance": provenance(),
        },
    )


if __name__ == "__main__":
    main()
