"""Filtered k-NN for the embedded index: qdrant-client local mode and Qdrant Edge (`qdrant-edge-py`:
Qdrant's engine in-process, with payload indexes and HNSW), both through the registry's own adapters
(`registry.vectors.QdrantIndex`, `registry.vectors_edge.EdgeIndex`, what `LOCUS_VECTOR_BACKEND` picks),
on the same vectors, payloads and queries.

    python -m benchmarks.vector_backends --models 10000 --queries 200

For each filter shape of `GET /v1/models/{id}/similar` (none but the model itself excluded; status; status +
provider + parameter range) it reports recall@k against exact numpy search under the same filter, the p50 /
p99 latency of one query (sequential, one thread of this process), the time to upsert every point, and
the time to scan every point with its vector (what loading the decision pool costs on a cache miss).
Edge runs twice: through the adapter, as configured by default (segments below the indexing threshold
are searched exactly, with payload indexes), and directly with an HNSW index forced (indexing threshold
1 KB, then `optimize()`), to show what an HNSW index would change at this size.
Vectors are random normal in the shipped checkpoint's embedding dimension; payloads mimic a registry
(90% active, 8 providers, log-uniform parameter counts). Writes benchmarks/results/vector_backends.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import ROOT, provenance, write_json

PROVIDERS = [f"provider-{i}" for i in range(8)]
STATUSES = ["active"] * 18 + ["deprecated", "unavailable"]


def make_data(n: int, dim: int, seed: int) -> tuple[list[uuid.UUID], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    ids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i) for i in range(n)]
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    payloads = [
        {
            "name": f"model-{i}",
            "status": STATUSES[int(rng.integers(len(STATUSES)))],
            "provider": PROVIDERS[int(rng.integers(len(PROVIDERS)))],
            "params_b": float(np.round(np.exp(rng.uniform(0, np.log(400))), 1)),
            "tags": ["chat"] if i % 3 else ["code"],
        }
        for i in range(n)
    ]
    return ids, vectors, payloads


# A filter shape: the registry's ModelFilter fields it sets, built per query from the query model's own row.
Shape = Callable[[dict[str, Any]], dict[str, Any]]
SHAPES: dict[str, Shape] = {
    "exclude_self": lambda p: {},
    "status": lambda p: {"statuses": ("active",)},
    "status_provider_params": lambda p: {
        "statuses": ("active",),
        "providers": (p["provider"], PROVIDERS[(PROVIDERS.index(p["provider"]) + 1) % len(PROVIDERS)]),
        "min_params": 7.0,
        "max_params": 70.0,
    },
}


def exact(
    vectors: np.ndarray, payloads: list[dict[str, Any]], q: int, spec: dict[str, Any], k: int
) -> list[int]:
    """Exact k nearest under the filter (numpy, float64 distances)."""
    ok = np.ones(len(vectors), bool)
    ok[q] = False
    if "statuses" in spec:
        ok &= np.array([p["status"] in spec["statuses"] for p in payloads])
    if "providers" in spec:
        ok &= np.array([p["provider"] in spec["providers"] for p in payloads])
    if "min_params" in spec:
        pb = np.array([p["params_b"] for p in payloads])
        ok &= (pb >= spec["min_params"]) & (pb <= spec["max_params"])
    d = np.linalg.norm(vectors.astype(np.float64) - vectors[q].astype(np.float64), axis=1)
    d[~ok] = np.inf
    top = np.argsort(d, kind="stable")[:k]
    return [int(i) for i in top if np.isfinite(d[i])]


class Adapter:
    """One of the registry's vector adapters on disk (what the embedded default runs)."""

    def __init__(self, path: Path, dim: int, *, edge: bool) -> None:
        from registry.vectors import QdrantIndex
        from registry.vectors_edge import EdgeIndex

        self.name = "qdrant-edge (EdgeIndex)" if edge else "qdrant-client local mode (QdrantIndex)"
        self.index = EdgeIndex(path=str(path)) if edge else QdrantIndex(path=str(path))
        self.index.ensure_collections("bench", dim, 8)

    def upsert(self, ids: list[uuid.UUID], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        from registry.ports import ModelPoint

        self.index.upsert_models(
            [ModelPoint(id=i, vector=v, payload=p) for i, v, p in zip(ids, vectors, payloads, strict=True)]
        )

    def search(self, vector: np.ndarray, k: int, spec: dict[str, Any], self_id: uuid.UUID) -> list[uuid.UUID]:
        from registry.ports import ModelFilter

        flt = ModelFilter(exclude_ids=(self_id,), **spec)
        return [h.id for h in self.index.search_models(vector, k, flt)]

    def scan(self) -> int:
        ids, _ = self.index.scan_models(None)
        return len(ids)

    def close(self) -> None:
        self.index.close()


class Edge:
    """Qdrant Edge in-process shard with keyword/float payload indexes, used directly; `hnsw`: force an
    HNSW index."""

    def __init__(self, path: Path, dim: int, *, hnsw: bool) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.hnsw = hnsw
        self.name = "qdrant-edge direct (HNSW forced)" if hnsw else "qdrant-edge direct (default config)"
        optimizers = qe.EdgeOptimizersConfig(indexing_threshold=1) if hnsw else None
        self.shard = qe.EdgeShard.create(
            str(path),
            qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Euclid), optimizers=optimizers
            ),
        )
        for field, schema in (
            ("status", qe.PayloadSchemaType.Keyword),
            ("provider", qe.PayloadSchemaType.Keyword),
            ("tags", qe.PayloadSchemaType.Keyword),
            ("params_b", qe.PayloadSchemaType.Float),
        ):
            self.shard.update(qe.UpdateOperation.create_field_index(field, schema))

    def upsert(self, ids: list[uuid.UUID], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        qe = self.qe
        for start in range(0, len(ids), 512):
            points = [
                qe.Point(str(i), v.tolist(), p)
                for i, v, p in zip(
                    ids[start : start + 512],
                    vectors[start : start + 512],
                    payloads[start : start + 512],
                    strict=True,
                )
            ]
            self.shard.update(qe.UpdateOperation.upsert_points(points))
        self.shard.flush()
        if self.hnsw:
            self.shard.optimize()

    def search(self, vector: np.ndarray, k: int, spec: dict[str, Any], self_id: uuid.UUID) -> list[uuid.UUID]:
        qe = self.qe
        must: list[Any] = []
        if "statuses" in spec:
            must.append(qe.FieldCondition("status", match=qe.MatchAny(list(spec["statuses"]))))
        if "providers" in spec:
            must.append(qe.FieldCondition("provider", match=qe.MatchAny(list(spec["providers"]))))
        if "min_params" in spec:
            must.append(
                qe.FieldCondition(
                    "params_b", range=qe.RangeFloat(gte=spec["min_params"], lte=spec["max_params"])
                )
            )
        flt = qe.Filter(must=must or None, must_not=[qe.HasIdCondition({str(self_id)})])
        hits = self.shard.query(
            qe.QueryRequest(limit=k, query=qe.Query.Nearest(vector.tolist()), filter=flt, with_payload=False)
        )
        return [uuid.UUID(str(h.id)) for h in hits]

    def scan(self) -> int:
        """Every point with its vector, as the adapter's scan_models pages through them."""
        n, offset = 0, None
        while True:
            records, offset = self.shard.scroll(
                self.qe.ScrollRequest(offset=offset, limit=1_000, with_payload=False, with_vector=True)
            )
            n += sum(1 for r in records if r.vector is not None)
            if offset is None:
                return n

    def close(self) -> None:
        self.shard.close()


def measure(
    backend: Any,
    ids: list[uuid.UUID],
    vectors: np.ndarray,
    payloads: list[dict[str, Any]],
    queries: list[int],
    truth: dict[str, list[list[int]]],
    k: int,
) -> dict[str, Any]:
    started = time.perf_counter()
    backend.upsert(ids, vectors, payloads)
    out: dict[str, Any] = {"upsert_s": time.perf_counter() - started, "shapes": {}}
    started = time.perf_counter()
    if backend.scan() != len(ids):
        raise RuntimeError(f"{backend.name}: the scan did not return every point")
    out["scan_all_s"] = time.perf_counter() - started  # the decision pool's load on a cache miss
    for shape, spec_of in SHAPES.items():
        for q in queries[:5]:  # warm-up
            backend.search(vectors[q], k, spec_of(payloads[q]), ids[q])
        lat, recall = [], []
        for q, want in zip(queries, truth[shape], strict=True):
            t = time.perf_counter()
            got = backend.search(vectors[q], k, spec_of(payloads[q]), ids[q])
            lat.append(time.perf_counter() - t)
            wanted = {ids[i] for i in want}
            recall.append(len(wanted & set(got)) / len(wanted) if wanted else 1.0)
        ms = np.asarray(lat) * 1000
        out["shapes"][shape] = {
            "recall_at_k": float(np.mean(recall)),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_matches": float(np.mean([len(w) for w in truth[shape]])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--dim", type=int, default=128, help="embedding dimension (the shipped checkpoint's: 128)"
    )
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vector_backends.json")
    args = ap.parse_args(argv)

    ids, vectors, payloads = make_data(args.models, args.dim, args.seed)
    queries = np.random.default_rng(args.seed + 1).choice(args.models, args.queries, replace=False).tolist()
    truth = {
        shape: [exact(vectors, payloads, q, spec_of(payloads[q]), args.k) for q in queries]
        for shape, spec_of in SHAPES.items()
    }
    results: dict[str, Any] = {
        "provenance": provenance(),
        "config": {
            "models": args.models,
            "queries": args.queries,
            "dim": args.dim,
            "k": args.k,
            "seed": args.seed,
        },
        "backends": {},
    }
    import qdrant_edge

    results["config"]["qdrant_edge_version"] = getattr(qdrant_edge, "__version__", None) or _version(
        "qdrant-edge-py"
    )
    results["config"]["qdrant_client_version"] = _version("qdrant-client")
    makers: list[Callable[[Path], Any]] = [
        lambda p: Adapter(p, args.dim, edge=False),
        lambda p: Adapter(p, args.dim, edge=True),
        lambda p: Edge(p, args.dim, hnsw=True),
    ]
    for make in makers:
        with tempfile.TemporaryDirectory(prefix="locus-vec-") as tmp:
            backend = make(Path(tmp) / "store")
            try:
                results["backends"][backend.name] = measure(
                    backend, ids, vectors, payloads, queries, truth, args.k
                )
            finally:
                backend.close()
        print(f"measured {backend.name}", flush=True)
    write_json(args.out, results)

    print(f"\n{args.models:,} models, dim {args.dim}, {args.queries} queries, k={args.k}")
    head = ("backend", "upsert s", "scan s", "filter", "recall", "p50 ms", "p99 ms")
    print("{:<40} {:>9} {:>7} {:<24} {:>7} {:>8} {:>8}".format(*head))
    for name, r in results["backends"].items():
        for shape, s in r["shapes"].items():
            print(
                f"{name:<40} {r['upsert_s']:9.2f} {r['scan_all_s']:7.2f} {shape:<24} {s['recall_at_k']:7.3f} "
                f"{s['p50_ms']:8.2f} {s['p99_ms']:8.2f}"
            )
    print(f"wrote {args.out}")
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
