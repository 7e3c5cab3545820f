"""Registry API latency: register a model with 1,024 evaluations, and `similar` at 1,000 / 10,000 models.

    python -m benchmarks.api                       # in-process uvicorn on a fresh embedded registry
    python -m benchmarks.api --url http://host:8000 --key lr_...   # against a running server
    python -m benchmarks.api --import-source ../shared/data/mmlu_pro  # also time a bulk import

Requests go over real HTTP (httpx, keep-alive). In-process, the model pool for `similar` is seeded
directly through the registry's repositories and vector index (random vectors; search cost does not
depend on where vectors come from); against --url it is seeded through the API with small
evaluation sets. Prints a table and writes benchmarks/results/api.json.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._common import QUERY_CACHE, ROOT, provenance, write_json

TOPICS = ["algebra", "biology", "chemistry", "economics", "history", "law", "philosophy", "physics"]


def p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": p(values, 50),
        "p95_ms": p(values, 95),
        "mean_ms": statistics.fmean(values) * 1000,
        "n": len(values),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def in_process_server(workdir: Path, checkpoint: Path | None) -> Iterator[tuple[str, str, Any]]:
    """A fresh embedded registry served by uvicorn in a thread: (url, admin key, container)."""
    import uvicorn

    from api.app import create_app
    from registry import services
    from registry.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{workdir / 'registry.db'}",
        qdrant_path=str(workdir / "qdrant"),
        encoder_checkpoint=checkpoint,
        query_cache_dir=QUERY_CACHE,
        max_items=1_000_000,
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 300
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.05)
    container = app.state.container
    key = services.create_api_key(container, "benchmark", ["admin"]).key
    try:
        yield f"http://127.0.0.1:{port}", key, container
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def random_checkpoint(directory: Path) -> Path:
    """A full-size, randomly initialised checkpoint: same cost per request as a trained one."""
    import torch

    from encoder.checkpoint import save_checkpoint
    from encoder.config import LocusConfig
    from encoder.model import LocusModel

    torch.manual_seed(0)
    save_checkpoint(LocusModel(LocusConfig()), directory)
    return directory


def seed_direct(container: Any, n: int, rng: np.random.Generator) -> list[uuid.UUID]:
    """Insert n models and their vectors straight through repositories and the index (one commit)."""
    from registry import repositories as repo
    from registry.ports import ModelPoint
    from registry.services.common import model_payload
    from registry.tables import ModelRow

    providers = ["acme", "zeta", "nova", "orbit"]
    rows = [
        ModelRow(
            id=uuid.uuid4(),
            name=f"seed-{uuid.uuid4().hex[:12]}",
            provider=providers[i % 4],
            params_b=float(rng.integers(1, 400)),
            status="active",
            meta={},
        )
        for i in range(n)
    ]
    vecs = rng.normal(size=(n, container.embedder.embedding_dim)).astype(np.float32)
    with container.session_factory() as s, s.begin():
        for row in rows:
            repo.set_tags(row, [])
        s.add_all(rows)
        s.flush()
        for row in rows:
            repo.set_embedding_state(s, row, container.embedder.fingerprint, 0)
        container.index.upsert_models(
            [ModelPoint(id=r.id, vector=v, payload=model_payload(r)) for r, v in zip(rows, vecs, strict=True)]
        )
    return [r.id for r in rows]


def seed_via_api(client: httpx.Client, keys: list[str], n: int, rng: np.random.Generator) -> list[uuid.UUID]:
    ids = []
    for _ in range(n):
        body = {
            "name": f"seed-{uuid.uuid4().hex[:12]}",
            "evaluations": [
                {"question": k, "score": float(s)} for k, s in zip(keys[:32], rng.random(32), strict=True)
            ],
        }
        r = client.post("/v1/models", json=body)
        r.raise_for_status()
        ids.append(uuid.UUID(r.json()["id"]))
    return ids


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"config": {"n_evals": args.n_evals, "pools": args.pools, "k": args.k}}
    with contextlib.ExitStack() as stack:
        container = None
        if args.url:
            url, key = args.url, args.key
            results["mode"] = f"external server {url}"
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="locus-bench-")))
            ckpt = args.checkpoint
            if ckpt is None:
                from encoder.checkpoint import DEFAULT_CHECKPOINT

                ckpt = DEFAULT_CHECKPOINT if (DEFAULT_CHECKPOINT / "config.json").is_file() else None
            if ckpt is None:
                ckpt = random_checkpoint(tmp / "ckpt")
                results["encoder"] = "random-init full-size checkpoint (no shipped default found)"
            else:
                results["encoder"] = str(ckpt)
            url, key, container = stack.enter_context(in_process_server(tmp / "registry", ckpt))
            results["mode"] = "in-process uvicorn, embedded mode (SQLite + qdrant-client local mode on disk)"
        client = stack.enter_context(
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        )

        # Questions: registered once (their encoding is not part of the timed registration).
        keys = [f"bench-{uuid.uuid4().hex[:8]}-{i}" for i in range(args.n_evals)]
        texts = [
            f"Benchmark question {i} on {TOPICS[i % len(TOPICS)]}: explain case {i}."
            for i in range(args.n_evals)
        ]
        t = time.perf_counter()
        r = client.post(
            "/v1/questions",
            json={"questions": [{"key": k, "text": x} for k, x in zip(keys, texts, strict=True)]},
        )
        r.raise_for_status()
        results["questions_register_s"] = time.perf_counter() - t

        # Register: a model with n_evals evaluations of known questions, repeated.
        times = []
        for i in range(args.warmup + args.repeats):
            body = {
                "name": f"bench-model-{uuid.uuid4().hex[:12]}",
                "provider": "bench",
                "evaluations": [
                    {"question": k, "score": float(s)}
                    for k, s in zip(keys, rng.random(len(keys)), strict=True)
                ],
            }
            t = time.perf_counter()
            r = client.post("/v1/models", json=body)
            elapsed = time.perf_counter() - t
            r.raise_for_status()
            if i >= args.warmup:
                times.append(elapsed)
        results["register"] = summary(times)

        # Similar at growing pool sizes.
        results["similar"] = {}
        have = len(times) + args.warmup
        pool: list[uuid.UUID] = []
        for size in args.pools:
            need = size - have
            if need > 0:
                t = time.perf_counter()
                new = (
                    seed_direct(container, need, rng)
                    if container is not None
                    else seed_via_api(client, keys, need, rng)
                )
                pool.extend(new)
                have += need
                seed_s = time.perf_counter() - t
            else:
                seed_s = 0.0
            total = client.get("/v1/models", params={"limit": 1}).json()["total"]
            targets = [pool[j] for j in rng.integers(0, len(pool), args.warmup + args.repeats)]
            lat = []
            for j, mid in enumerate(targets):
                t = time.perf_counter()
                r = client.get(f"/v1/models/{mid}/similar", params={"k": args.k})
                elapsed = time.perf_counter() - t
                r.raise_for_status()
                assert len(r.json()["items"]) == args.k
                if j >= args.warmup:
                    lat.append(elapsed)
            flt = []
            for mid in targets[: args.repeats // 2]:
                t = time.perf_counter()
                r = client.get(f"/v1/models/{mid}/similar", params={"k": args.k, "provider": "acme"})
                flt.append(time.perf_counter() - t)
                r.raise_for_status()
            results["similar"][str(size)] = {
                "models": total,
                "seed_s": seed_s,
                "unfiltered": summary(lat),
                "filtered_provider": summary(flt),
            }

    if args.import_source:
        results["import"] = time_import(args.import_source, args.checkpoint)
    return results


def time_import(path: Path, checkpoint: Path | None) -> dict[str, Any]:
    """Wall-clock of `locus-registry import PATH` (in-process, fresh embedded registry)."""
    from api.cli import main
    from registry.settings import Settings

    with tempfile.TemporaryDirectory(prefix="locus-import-") as d:
        ckpt = checkpoint
        if ckpt is None:
            from encoder.checkpoint import DEFAULT_CHECKPOINT

            ckpt = (
                DEFAULT_CHECKPOINT
                if (DEFAULT_CHECKPOINT / "config.json").is_file()
                else random_checkpoint(Path(d) / "ckpt")
            )
        settings = Settings(
            database_url=f"sqlite:///{Path(d) / 'registry.db'}",
            qdrant_path=str(Path(d) / "qdrant"),
            encoder_checkpoint=ckpt,
            query_cache_dir=QUERY_CACHE,
        )
        t = time.perf_counter()
        code = main(["import", str(path)], settings)
        elapsed = time.perf_counter() - t
        if code != 0:
            raise RuntimeError(f"import failed with exit code {code}")
        return {
            "source": str(path),
            "seconds": elapsed,
            "includes": "process-level setup, question encoding (cache)",
        }


def table(results: dict[str, Any]) -> str:
    def row(label: str, st: dict[str, float], target: str = "") -> str:
        return f"{label:<44}{st['p50_ms']:>10.1f}{st['p95_ms']:>10.1f}{st['n']:>6}  {target}"

    cfg = results["config"]
    lines = [f"mode: {results['mode']}", f"{'measurement':<44}{'p50 ms':>10}{'p95 ms':>10}{'n':>6}  target"]
    lines.append(row(f"register, {cfg['n_evals']} evaluations", results["register"], "<= 100"))
    for size, r in results["similar"].items():
        target = {"1000": "<= 10", "10000": "<= 30"}.get(size, "")
        lines.append(row(f"similar k={cfg['k']}, {r['models']} models", r["unfiltered"], target))
        lines.append(row("  + provider filter", r["filtered_provider"]))
    if "import" in results:
        imp = results["import"]
        lines.append(f"import {imp['source']}: {imp['seconds']:.1f} s (target <= 180 s)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server; default: start one in-process on a temp folder")
    ap.add_argument("--key", help="API key with write scope (with --url)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="encoder checkpoint (in-process)")
    ap.add_argument("--n-evals", type=int, default=1024)
    ap.add_argument("--pools", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--import-source", type=Path, default=None, help="also time a bulk import of this source")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "api.json")
    args = ap.parse_args()
    if args.url and not args.key:
        ap.error("--url needs --key")
    doc = {"provenance": provenance(), **run(args)}
    print(table(doc))
    write_json(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
