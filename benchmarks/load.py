"""Loopback load test: req/s, p50, p99 and errors of the registry's hot endpoints at a fixed concurrency
for a fixed duration, next to a minimal FastAPI + numpy k-NN endpoint over the same vectors, the query
encoder's own throughput (in-process threads, no HTTP) and, with the route phases, a minimal FastAPI
endpoint that only encodes the posted text (`minimal_encode`: the same HTTP stack and load generator around
the same encoder), all measured in the same run on the same machine.

    python -m benchmarks.load                                   # 1,000 models, 8 clients, 10 s each
    python -m benchmarks.load --models 1000 10000 --duration 15 --concurrency 8

Each server runs in its own process (uvicorn, one worker) on 127.0.0.1; the load generator is an asyncio
httpx client with `--concurrency` connections in this process. Every phase stops by itself after
`--duration` seconds. The registry is the embedded default (SQLite + Qdrant Edge) with the
shipped checkpoint, seeded directly (random model vectors: search cost does not depend on where they come
from), each model scored 0/1 on 96 of 128 registered questions (so `similar`'s behaviour re-ranking has
shared questions and predicted profiles to compare). The server warms its caches at start
(`LOCUS_CACHE_WARMUP`, off with `--no-cache-warmup`) and the phases begin once `/readyz` answers 200, as a
load balancer behind a readiness probe would send traffic; the wait is reported under `ready`. Requests:
similar = GET /v1/models/{id}/similar?k=10 about a random model (on a model's first ask since start its
ranked answer and predicted-profile distances are computed; its other inputs are warm unless the warm-up
is off; a repeated request is answered from the stored bytes of its first answer, `api.answers`, unless
`--no-answer-cache`),
similar_warm = similar after every model has been asked about once (unmeasured; the steady state of a
long-running process between writes, where every answer comes from the cache), fallbacks = GET
/v1/models/{id}/fallbacks, route = POST /v1/route with one new query text per request (so the query
encoder runs each time) over every model, route_100 = the same over 100 named candidates, register = POST
/v1/models with 128 evaluations of registered questions, similar_during_writes = similar (on other models)
while one more client registers a model every 0.2 s (what a registry taking registrations serves; the
registrations made are reported). Each measured run goes on with the requests after its 2 s warm-up's; for
the phases that pick a random model per request, `repeated_share` is the share of measured requests about
a model already asked about earlier in the phase (what caches can answer from; `similar` reuses a whole
ranked answer until the next write). Beside req/s, each phase reports `cpu_ms_per_request`: the server
process's CPU time (user + system, all threads, from /proc/<pid>/stat; Linux only) over the measured run
divided by the requests it served then (registrations of similar_during_writes included): what one request
costs the server, which req/s mixes with how much of the two cores the load generator and the machine's
other tenants leave it. Its ratio to the minimal endpoint's is printed beside it. Both measures move by a
tenth or more between runs on a shared machine (similar at 1,000 models, eight runs in one session: 90-161
req/s, 6.2-11.3 ms per request). Writes benchmarks/results/load.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
from fastapi import Body

from benchmarks._common import QUERY_CACHE, ROOT, provenance, write_json
from benchmarks.api import TOPICS, free_port, seed_direct

N_QUESTIONS = 128
EVALUATED = 96  # questions each seeded model is scored on
ROUTE_CANDIDATES = 100  # the route_100 phase: one query over this many named candidates
WRITE_EVERY = 0.2  # the similar_during_writes phase: one registration every this many seconds


# ------------------------------------------------------------------ the minimal baseline server


def baseline_app(vectors_file: Path) -> Any:
    """FastAPI + numpy: the k nearest rows of a matrix by Euclidean distance, nothing else."""
    from fastapi import FastAPI

    data = np.load(vectors_file)
    ids, vectors = [str(x) for x in data["ids"]], data["vectors"].astype(np.float32)
    app = FastAPI()

    @app.get("/similar/{i}")
    def similar(i: int, k: int = 10) -> dict[str, Any]:
        d = np.linalg.norm(vectors - vectors[i], axis=1)
        d[i] = np.inf
        top = np.argpartition(d, k)[:k]
        top = top[np.argsort(d[top])]
        return {"items": [{"id": ids[j], "distance": float(d[j])} for j in top]}

    return app


def encoder_app() -> Any:
    """FastAPI + the registry's query encoder: the posted texts encoded (with one intra-op thread, as the
    registry serves), their vectors' norms returned; nothing else. What `route` costs with no registry:
    the same HTTP stack and load generator around the same encoder."""
    import torch
    from fastapi import FastAPI

    from encoder.query import QueryEncoder

    torch.set_num_threads(1)
    enc = QueryEncoder(cache_dir=None)
    enc.encode(["warm up"])
    app = FastAPI()

    @app.post("/encode")
    def encode(queries: Annotated[list[str], Body(embed=True)]) -> dict[str, Any]:  # {"queries": [...]}
        vectors = enc.encode(queries, persist=False)
        return {"norms": [float(v) for v in np.linalg.norm(vectors, axis=1)]}

    return app


# ------------------------------------------------------------------ processes


@contextlib.contextmanager
def serve(args: list[str], env: dict[str, str], port: int, log: Path | None = None) -> Iterator[str]:
    """Run a server process until the block ends; wait until it answers. With `log`, its output is kept
    there and its tail printed if the block fails (e.g. the server died)."""
    with serve_process(args, env, port, log) as (url, _pid):
        yield url


@contextlib.contextmanager
def serve_process(
    args: list[str], env: dict[str, str], port: int, log: Path | None = None
) -> Iterator[tuple[str, int]]:
    """`serve`, yielding the server's url and process id."""
    out = log.open("ab") if log is not None else None
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=out if out is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if out is not None else None,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server {args} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(f"{url}/healthz" if "api" in args else f"{url}/docs", timeout=2).status_code
                    == 200
                ):
                    break
            if time.time() > deadline:
                raise RuntimeError(f"server {args} did not start")
            time.sleep(0.2)
        yield url, proc.pid
    except BaseException:
        if log is not None:
            print(f"server log tail (exit code {proc.poll()}):\n{log.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if out is not None:
            out.close()


def seed(workdir: Path, n_models: int) -> tuple[dict[str, str], str, list[str], list[str], Path]:
    """Build the embedded registry in `workdir` (models, questions, a key), then release it for the server.
    Returns (server env, API key, model ids, question keys, vectors file for the baseline)."""
    from api.wiring import build_container
    from registry import services
    from registry.schemas import QuestionIn
    from registry.settings import Settings

    env = {
        "LOCUS_DATABASE_URL": f"sqlite:///{workdir / 'registry.db'}",
        "LOCUS_QDRANT_PATH": str(workdir / "qdrant"),
        "LOCUS_QUERY_CACHE_DIR": str(QUERY_CACHE),
        "LOCUS_MAX_ITEMS": "1000000",
        "LOCUS_LOG_LEVEL": "warning",
        "HF_HUB_OFFLINE": "1",
    }
    settings = Settings(**{k[len("LOCUS_") :].lower(): v for k, v in env.items() if k.startswith("LOCUS_")})
    container = build_container(settings)
    try:
        rng = np.random.default_rng(0)
        ids = seed_direct(container, n_models, rng)
        keys = [f"load-q{i}" for i in range(N_QUESTIONS)]
        services.add_questions(
            container,
            [
                QuestionIn(key=k, text=f"Load question {i} on {TOPICS[i % len(TOPICS)]}: case {i}.")
                for i, k in enumerate(keys)
            ],
        )
        seed_evaluations(container, ids, keys, rng)
        key = services.create_api_key(container, "load", ["admin"]).key
        vids, vectors = container.index.scan_models(None)
        vectors_file = workdir / "vectors.npz"
        np.savez(vectors_file, ids=np.asarray([str(v) for v in vids]), vectors=vectors)
    finally:
        container.close()
    return env, key, [str(i) for i in ids], keys, vectors_file


def seed_evaluations(container: Any, ids: list[uuid.UUID], keys: list[str], rng: np.random.Generator) -> None:
    """Score every model on a random EVALUATED of the N_QUESTIONS questions (0/1), so `similar`'s
    behaviour re-ranking reads and compares real evidence (shared questions and predicted profiles)."""
    from registry import repositories as repo

    with container.session_factory() as s, s.begin():
        qids = list(repo.question_ids_by_keys(s, keys).values())
        rows = repo.get_models(s, ids)
        for m in ids:
            pick = rng.choice(len(qids), EVALUATED, replace=False)
            items = [(qids[i], float(rng.random() < 0.6), None) for i in pick]
            repo.upsert_evaluations(s, m, items, new_model=True)
            repo.set_embedding_state(s, rows[m], container.embedder.fingerprint, EVALUATED)


# ------------------------------------------------------------------ the load generator


def load(
    url: str,
    make: Callable[[int], tuple[str, str, Any]],
    *,
    concurrency: int,
    duration: float,
    headers: dict[str, str] | None = None,
    counter: Iterator[int] | None = None,
) -> dict[str, Any]:
    """`concurrency` clients send requests made by `make(n)` -> (method, path, json) for `duration` s;
    n from `counter` (default: from 0), so a measured run can go on where its warm-up stopped."""
    counter = counter if counter is not None else itertools.count()

    async def main() -> tuple[list[float], int, dict[int, int]]:
        latencies: list[float] = []
        errors = 0
        statuses: dict[int, int] = {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
            end = time.perf_counter() + duration

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < end:
                    method, path, body = make(next(counter))
                    t = time.perf_counter()
                    try:
                        r = await client.request(method, path, json=body)
                        ok = r.status_code < 400
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    except httpx.HTTPError:
                        ok = False
                    latencies.append(time.perf_counter() - t)
                    if not ok:
                        errors += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, statuses

    started = time.perf_counter()
    latencies, errors, statuses = asyncio.run(main())
    return stats(latencies, errors, time.perf_counter() - started) | {"statuses": statuses}


def ask_each(url: str, paths: list[str], *, headers: dict[str, str], concurrency: int) -> None:
    """GET every path once, `concurrency` at a time (not measured); raises on any failure."""

    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:

            async def one(path: str) -> None:
                async with gate:
                    (await client.get(path)).raise_for_status()

            await asyncio.gather(*(one(p) for p in paths))

    asyncio.run(main())


def stats(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors,
    }


def encoder_floor(concurrency: int, duration: float) -> dict[str, Any]:
    """The query encoder's own throughput on one new text per call, `concurrency` threads, no HTTP: with
    one intra-op thread per encode (as the server runs it, `Settings.torch_threads`) and with torch's
    default (every core); the faster of the two is the floor, with both reported."""
    import torch

    from encoder.query import QueryEncoder

    default = torch.get_num_threads()
    runs: dict[int, dict[str, Any]] = {}
    try:
        for threads in sorted({1, default}):
            torch.set_num_threads(threads)
            enc = QueryEncoder(cache_dir=None)
            enc.encode(["warm up"])
            runs[threads] = _encode_run(enc, concurrency, duration)
    finally:
        torch.set_num_threads(default)
    best = max(runs, key=lambda t: runs[t]["req_per_s"])
    return runs[best] | {
        "torch_threads": best,
        "req_per_s_by_torch_threads": {str(t): r["req_per_s"] for t, r in runs.items()},
    }


def _encode_run(enc: Any, concurrency: int, duration: float) -> dict[str, Any]:
    counter = itertools.count()
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + duration

    def worker() -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            enc.encode([f"floor query {next(counter)} {uuid.uuid4().hex}"])
            with lock:
                latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return stats(latencies, 0, time.perf_counter() - started)


# ------------------------------------------------------------------ the run


def run_pool(n_models: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="locus-load-") as tmp:
        workdir = Path(tmp)
        env, key, ids, keys, vectors_file = seed(workdir, n_models)
        rng = np.random.default_rng(1)
        picks = rng.integers(0, len(ids), size=1_000_000)
        phases: dict[str, Callable[[int], tuple[str, str, Any]]] = {
            "similar": lambda n: ("GET", f"/v1/models/{ids[picks[n]]}/similar?k=10", None),
            # similar once every model has been asked about (a long-running process between writes)
            "similar_warm": lambda n: ("GET", f"/v1/models/{ids[picks[n + 250_000]]}/similar?k=10", None),
            "fallbacks": lambda n: ("GET", f"/v1/models/{ids[picks[n]]}/fallbacks", None),
            "route": lambda n: (
                "POST",
                "/v1/route",
                {"queries": [f"Which model answers load query {n} {uuid.uuid4().hex[:8]} best?"]},
            ),
            "route_100": lambda n: (
                "POST",
                "/v1/route",
                {
                    "queries": [f"Which model answers load query {n} {uuid.uuid4().hex[:8]} best?"],
                    "candidates": ids[:ROUTE_CANDIDATES],
                },
            ),
            "register": lambda n: (
                "POST",
                "/v1/models",
                {
                    "name": f"load-{uuid.uuid4().hex}",
                    "provider": "load",
                    "evaluations": [
                        {"question": k, "score": float((n * 7 + i) % 5) / 4} for i, k in enumerate(keys)
                    ],
                },
            ),
            # similar again, on other models, while one more client registers a model every WRITE_EVERY s
            "similar_during_writes": lambda n: (
                "GET",
                f"/v1/models/{ids[picks[n + 500_000]]}/similar?k=10",
                None,
            ),
        }
        port = free_port()
        env = {
            **env,
            "LOCUS_CACHE_WARMUP": "true" if args.cache_warmup else "false",
            **({} if args.answer_cache else {"LOCUS_ANSWER_CACHE_MB": "0"}),
        }
        with serve_process(["-m", "api", "serve", "--port", str(port)], env, port) as (url, pid):
            out["ready"] = wait_ready(url)  # phases start when a load balancer would send traffic
            print(f"  {n_models} models ready after {out['ready']['wait_s']:.1f} s", flush=True)
            for name, make in phases.items():
                if name not in args.phases:
                    continue
                if name == "similar_warm":
                    paths = [f"/v1/models/{m}/similar?k=10" for m in ids]
                    ask_each(url, paths, headers=_auth(key), concurrency=args.concurrency)
                # the measured run goes on with the requests after the warm-up's, not the same ones again
                counter = itertools.count()
                load(url, make, concurrency=args.concurrency, duration=2, headers=_auth(key), counter=counter)
                warmed = next(counter)
                with writing(url, key, keys, name == "similar_during_writes") as writes, cpu_of(pid) as cpu:
                    out[name] = load(
                        url,
                        make,
                        concurrency=args.concurrency,
                        duration=args.duration,
                        headers=_auth(key),
                        counter=itertools.count(warmed),
                    )
                out[name]["cpu_ms_per_request"] = per_request(cpu, out[name]["requests"] + writes[0])
                if name in PICKED:
                    out[name]["repeated_share"] = repeated_share(
                        picks, PICKED[name], warmed, out[name]["requests"]
                    )
                if name == "similar_during_writes":
                    out[name]["writes"] = writes[0]
                    out[name]["writes_per_s"] = writes[0] / args.duration
                print(f"  {n_models} models {name}: {_row(out[name])}", flush=True)
        port = free_port()
        code = f"import uvicorn; from benchmarks.load import baseline_app; from pathlib import Path; uvicorn.run(baseline_app(Path({str(vectors_file)!r})), host='127.0.0.1', port={port}, log_level='warning', access_log=False)"  # noqa: E501
        with serve_process(["-c", code], {}, port) as (url, pid):

            def make_base(n: int) -> tuple[str, str, Any]:
                return "GET", f"/similar/{picks[n]}?k=10", None

            load(url, make_base, concurrency=args.concurrency, duration=2)
            with cpu_of(pid) as cpu:
                base = load(url, make_base, concurrency=args.concurrency, duration=args.duration)
            out["minimal_knn"] = base | {"cpu_ms_per_request": per_request(cpu, base["requests"])}
            print(f"  {n_models} models minimal k-NN: {_row(out['minimal_knn'])}", flush=True)
        if {"route", "route_100"} & set(args.phases):
            port = free_port()
            code = f"import uvicorn; from benchmarks.load import encoder_app; uvicorn.run(encoder_app(), host='127.0.0.1', port={port}, log_level='warning', access_log=False)"  # noqa: E501
            with serve_process(["-c", code], {"HF_HUB_OFFLINE": "1"}, port) as (url, pid):

                def make_encode(n: int) -> tuple[str, str, Any]:
                    return "POST", "/encode", phases["route"](n)[2]  # the route phase's texts

                load(url, make_encode, concurrency=args.concurrency, duration=2)
                with cpu_of(pid) as cpu:
                    base = load(url, make_encode, concurrency=args.concurrency, duration=args.duration)
                out["minimal_encode"] = base | {"cpu_ms_per_request": per_request(cpu, base["requests"])}
                print(f"  {n_models} models minimal encode: {_row(out['minimal_encode'])}", flush=True)
    return out


def wait_ready(url: str, timeout: float = 900.0) -> dict[str, Any]:
    """Poll `/readyz` until it answers 200 (after the start-up cache warm-up, unless disabled): seconds
    waited since `/healthz` first answered, and what the server says of its warm-up."""
    started = time.perf_counter()
    while True:
        r = httpx.get(f"{url}/readyz", timeout=10)
        if r.status_code == 200:
            return {"wait_s": time.perf_counter() - started, "cache_warmup": r.json().get("cache_warmup")}
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"server not ready after {timeout} s: {r.text}")
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) the process has used so far; None where /proc is not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


@contextlib.contextmanager
def cpu_of(pid: int) -> Iterator[list[float | None]]:
    """The CPU seconds process `pid` used while the block ran: `[seconds]` once it ends ([None]: unknown)."""
    used: list[float | None] = [None]
    before = cpu_seconds(pid)
    yield used
    after = cpu_seconds(pid)
    used[0] = after - before if before is not None and after is not None else None


def per_request(cpu: list[float | None], requests: int) -> float | None:
    return cpu[0] * 1000 / requests if cpu[0] is not None and requests else None


# Phases that ask about a random model per request: the offset of their picks (see `run_pool`).
PICKED = {"similar": 0, "fallbacks": 0, "similar_during_writes": 500_000}


def repeated_share(picks: np.ndarray, offset: int, warmed: int, requests: int) -> float:
    """The share of a phase's measured requests (after `warmed` warm-up ones) about a model already asked
    about earlier in the phase: such a request may be answered from what the first one left in the
    caches (without a write in between, `similar`'s whole ranked answer)."""
    seen = picks[offset : offset + warmed + requests]
    first = np.zeros(len(seen), bool)
    first[np.unique(seen, return_index=True)[1]] = True
    measured = first[warmed:]
    return float(1 - measured.mean()) if len(measured) else 0.0


@contextlib.contextmanager
def writing(url: str, key: str, keys: list[str], active: bool) -> Iterator[list[int]]:
    """While the block runs (if `active`), one client registers a model (128 evaluations) every
    WRITE_EVERY seconds; yields the count of registrations, final when the block ends."""
    count = [0]
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=url, headers=_auth(key), timeout=60) as client:
            while not stop.wait(WRITE_EVERY):
                body = {
                    "name": f"write-{uuid.uuid4().hex}",
                    "provider": "load",
                    "evaluations": [
                        {"question": k, "score": float((count[0] + i) % 5) / 4} for i, k in enumerate(keys)
                    ],
                }
                r = client.post("/v1/models", json=body)
                r.raise_for_status()
                count[0] += 1

    th = threading.Thread(target=writer, daemon=True)
    if active:
        th.start()
    try:
        yield count
    finally:
        stop.set()
        if active:
            th.join()


def profile(n_models: int, calls: int, top: int = 15) -> dict[str, Any]:
    """Time per call (unprofiled, then under cProfile) of `calls` similar (ranked by behaviour and by
    embedding), fallbacks, route (one new query) and registration (128 evaluations) service calls,
    in-process on a seeded embedded registry: where the time of a request goes, without
    HTTP."""
    import cProfile
    import io
    import pstats

    from api.wiring import build_container
    from registry import services
    from registry.decisions.schemas import RouteRequest
    from registry.decisions.service import fallbacks, route_queries
    from registry.schemas import EvaluationIn, ModelCreate
    from registry.settings import Settings

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="locus-profile-") as tmp:
        env, _key, ids, keys, _vectors = seed(Path(tmp), n_models)
        picks = [uuid.UUID(ids[i]) for i in np.random.default_rng(2).integers(0, len(ids), 100_000)]
        # Without the start-up cache warm-up: the app `http_overhead` serves runs whatever the container's
        # settings say beside its requests, and a warm-up thread reading every model's inputs would run
        # while they are timed (at 10,000 models, for most of the run); the service calls have none.
        settings = Settings(
            **{k[len("LOCUS_") :].lower(): v for k, v in env.items() if k.startswith("LOCUS_")},
            cache_warmup=False,
        )
        container = build_container(settings)
        try:
            work: dict[str, Callable[[int], object]] = {
                "similar": lambda n: services.similar_models(container, picks[n + 1], 10),
                "similar_embedding": lambda n: services.similar_models(
                    container, picks[n + 1], 10, rank_by="embedding"
                ),
                "fallbacks": lambda n: fallbacks(container, picks[n + 1], 5),
                "route": lambda n: route_queries(
                    container, RouteRequest(queries=[f"Profiled query {n} {uuid.uuid4().hex}"])
                ),
                "register": lambda n: services.register_model(
                    container,
                    ModelCreate(
                        name=f"profiled-{uuid.uuid4().hex}",
                        evaluations=[
                            EvaluationIn(question=k, score=float((n + i) % 5) / 4) for i, k in enumerate(keys)
                        ],
                    ),
                ),
            }
            for name, fn in work.items():
                fn(-1)  # warm-up
                started = time.perf_counter()
                for n in range(calls):  # unprofiled: cProfile's own overhead inflates the times below
                    fn(calls + n)
                plain_ms = (time.perf_counter() - started) / calls * 1000
                prof = cProfile.Profile()
                started = time.perf_counter()
                prof.enable()
                for n in range(calls):
                    fn(n)
                prof.disable()
                per_call_ms = (time.perf_counter() - started) / calls * 1000
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(top)
                out[name] = {
                    "calls": calls,
                    "ms_per_call_unprofiled": plain_ms,
                    "ms_per_call": per_call_ms,
                    "top_cumulative": text.getvalue(),
                }
                print(
                    f"profile {name}: {plain_ms:.1f} ms per call ({per_call_ms:.1f} under cProfile)\n"
                    f"{text.getvalue()}",
                    flush=True,
                )
            out["similar_http"] = http_overhead(container, settings, _key, picks, calls)
            print(f"profile similar through the ASGI app: {out['similar_http']}", flush=True)
        finally:
            container.close()
    return out


def http_overhead(
    container: Any, settings: Any, key: str, picks: list[uuid.UUID], calls: int
) -> dict[str, Any]:
    """The same `similar` calls one at a time as service calls and as requests through the whole ASGI app
    (middleware, auth, dependencies, validation, JSON; no socket): what the HTTP stack adds per request."""
    from api.app import create_app
    from registry import services

    if container.settings.cache_warmup:  # the app runs what the container's settings say, not `settings`
        raise ValueError("http_overhead needs a container built with cache_warmup=False")
    app = create_app(settings, container=container)
    # Requests run on the serving snapshot (`container.current()`: its own index view, so its own caches);
    # the service calls here do too, so that both start from the same caches.
    bound = container.current()
    base = 2 * calls + 10  # models the cProfile rounds did not touch: caches as cold for both
    started = time.perf_counter()
    for n in range(calls):
        services.similar_models(bound, picks[base + n], 10)
    service_ms = (time.perf_counter() - started) / calls * 1000

    async def requests() -> float:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as c,
        ):
            began = time.perf_counter()
            for n in range(calls):
                r = await c.get(f"/v1/models/{picks[base + calls + n]}/similar?k=10", headers=_auth(key))
                r.raise_for_status()
            return (time.perf_counter() - began) / calls * 1000

    http_ms = asyncio.run(requests())
    return {
        "calls": calls,
        "service_ms": service_ms,
        "asgi_ms": http_ms,
        "http_stack_ms": http_ms - service_ms,
    }


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _row(r: dict[str, Any]) -> str:
    return (
        f"{r['req_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms"
        f"  errors {r['errors']}"
        + (f"  repeated {r['repeated_share']:.0%}" if "repeated_share" in r else "")
        + (f"  cpu {r['cpu_ms_per_request']:.2f} ms/req" if r.get("cpu_ms_per_request") is not None else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, nargs="+", default=[1000])
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    ap.add_argument(
        "--phases",
        nargs="+",
        default=[
            "similar",
            "similar_warm",
            "fallbacks",
            "route",
            "route_100",
            "register",
            "similar_during_writes",
        ],
        help="registry phases",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="CALLS",
        help="also time CALLS in-process calls of each kind",
    )
    ap.add_argument(
        "--no-cache-warmup",
        dest="cache_warmup",
        action="store_false",
        help="serve with LOCUS_CACHE_WARMUP=false: `similar` then starts from cold caches",
    )
    ap.add_argument(
        "--no-answer-cache",
        dest="answer_cache",
        action="store_false",
        help="serve with LOCUS_ANSWER_CACHE_MB=0: a repeated similar/fallbacks goes through FastAPI again",
    )
    args = ap.parse_args(argv)

    results: dict[str, Any] = {
        "provenance": provenance(),
        "config": {
            "models": args.models,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "cache_warmup": args.cache_warmup,
            "answer_cache": args.answer_cache,
        },
        "pools": {},
    }
    print(
        f"query encoder alone, {args.concurrency} threads, one new text per call (the faster of 1 and all"
        " intra-op threads):",
        flush=True,
    )
    results["query_encoder"] = encoder_floor(args.concurrency, args.duration)
    print(f"  {_row(results['query_encoder'])}", flush=True)
    for n in args.models:
        results["pools"][str(n)] = run_pool(n, args)
    if args.profile:
        results["profile"] = profile(args.models[0], args.profile)
    write_json(args.out, results)

    print(
        f"\n{'models':>7} {'endpoint':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        f" {'cpu ms/req':>10} {'x minimal':>9}"
    )
    for n, pool in results["pools"].items():
        base = pool.get("minimal_knn", {}).get("cpu_ms_per_request")
        for name, r in pool.items():
            if name == "ready":
                continue
            cells = f"{r['req_per_s']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7d}"
            cpu = r.get("cpu_ms_per_request")
            cpu_cell = f"{cpu:10.2f}" if cpu is not None else f"{'-':>10}"
            ratio = f"{cpu / base:9.1f}" if cpu is not None and base else f"{'-':>9}"
            print(f"{n:>7} {name:<22} {cells} {cpu_cell} {ratio}")
    q = results["query_encoder"]
    print(f"{'-':>7} {'encoder':<22} {q['req_per_s']:8.1f} {q['p50_ms']:8.1f} {q['p99_ms']:8.1f} {'-':>7}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
