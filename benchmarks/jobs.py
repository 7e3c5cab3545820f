"""A 12k-question import job in a served API while clients keep reading and writing.

The server is `python -m api serve` (uvicorn, one process, one job worker thread) on 127.0.0.1 with
the shipped encoder, on a SQLite file (or `--db` PostgreSQL) and a local Qdrant folder: embedded
Qdrant is one process per folder, so the job runs in the API process's worker thread. The registry is
seeded with 40 models (256 questions each); then an admin submits an `import` job (server path, the
normalised layout) of `--questions` synthetic questions x `--models` models (`--coverage` of the
pairs scored), and until the job ends reader threads call `GET /v1/models/{id}/similar` and
`GET /v1/models`, writer threads add evaluations to seeded models, and a poller follows the job.
Reported: requests during the job per endpoint, errors (target 0), latency, the job's stages.

The questions are synthetic short texts (the query-encoding cache holds nothing of the shared
sources' 12k-question sets, and encoding zeroeval's long texts costs minutes of CPU). On the first
run the job encodes all 12k itself (about 5 minutes on this 2-core machine under the read load);
later runs find them in the shared on-disk cache.

    nice -n 10 python -m benchmarks.jobs [--questions 12000 --models 16 --coverage 0.6 --db URL]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._common import QUERY_CACHE, ROOT, provenance, write_json
from benchmarks.load import serve
from registry.jobs.importing import CHUNK_EVALUATIONS

SEED_MODELS, SEED_QUESTIONS, SEED_EVALUATED = 40, 256, 192
TOPICS = ["arithmetic", "geography", "chemistry", "history", "grammar", "logic", "biology", "music"]


def write_source(
    folder: Path, n_questions: int, n_models: int, coverage: float, rng: np.random.Generator
) -> int:
    """The normalised layout; returns the number of evaluations."""
    folder.mkdir(parents=True)
    with (folder / "questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question_id", "text", "category"])
        for j in range(n_questions):
            topic = TOPICS[j % len(TOPICS)]
            w.writerow([f"b{j}", f"Bench question {j} about {topic}: what follows {j * 7 % 1000}?", topic])
    ability = rng.uniform(0.3, 0.9, size=n_models)
    n = 0
    with (folder / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "question_id", "label"])
        for i in range(n_models):
            scored = np.nonzero(rng.random(n_questions) < coverage)[0]
            for j in scored:
                w.writerow([f"bench-model-{i:03d}", f"b{j}", int(rng.random() < ability[i])])
            n += len(scored)
    return n


def seed(workdir: Path, env: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """Seed models through the services (before the server holds the Qdrant folder); an admin key."""
    from api.wiring import build_container
    from registry import services
    from registry.schemas import EvaluationIn, ModelCreate
    from registry.settings import Settings

    settings = Settings(**{k[len("LOCUS_") :].lower(): v for k, v in env.items() if k.startswith("LOCUS_")})
    container = build_container(settings)
    rng = np.random.default_rng(1)
    keys = [f"seed-q{j}" for j in range(SEED_QUESTIONS)]
    texts = [f"Seed question {j} on {TOPICS[j % len(TOPICS)]}: case {j}." for j in range(SEED_QUESTIONS)]
    ids = []
    try:
        for i in range(SEED_MODELS):
            pick = rng.choice(SEED_QUESTIONS, size=SEED_EVALUATED, replace=False)
            evals = [
                EvaluationIn(question=keys[j], text=texts[j], score=float(rng.random() < 0.6)) for j in pick
            ]
            ids.append(
                str(
                    services.register_model(
                        container, ModelCreate(name=f"seed-{i:03d}", evaluations=evals)
                    ).id
                )
            )
        key = services.create_api_key(container, "bench", ["admin"]).key
    finally:
        container.close()
    return key, ids, keys


class Log:
    """Every request: (start time, endpoint, status or exception name, seconds)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, str, str, float]] = []
        self.lock = threading.Lock()

    def call(
        self, http: httpx.Client, endpoint: str, method: str, path: str, **kw: Any
    ) -> httpx.Response | None:
        t0 = time.monotonic()
        try:
            r = http.request(method, path, **kw)
            status = str(r.status_code)
        except httpx.HTTPError as exc:
            r, status = None, type(exc).__name__
        with self.lock:
            self.rows.append((t0, endpoint, status, time.monotonic() - t0))
        return r


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="locus-bench-jobs-") as tmp:
        workdir = Path(tmp)
        n_evals = write_source(
            workdir / "imports" / "bench12k", args.questions, args.models, args.coverage, rng
        )
        env = {
            "LOCUS_DATABASE_URL": args.db or f"sqlite:///{workdir / 'registry.db'}",
            "LOCUS_QDRANT_PATH": str(workdir / "qdrant"),
            "LOCUS_QUERY_CACHE_DIR": str(QUERY_CACHE),
            "LOCUS_IMPORT_ROOT": str(workdir / "imports"),
            "LOCUS_JOB_DIR": str(workdir / "jobs"),
            "LOCUS_JOB_WORKERS": "1",
            "LOCUS_MAX_ITEMS": "1000000",
            "LOCUS_LOG_LEVEL": "warning",
            "HF_HUB_OFFLINE": "1",
        }
        if args.db:  # a fresh PostgreSQL database: the server does not migrate it by itself
            from registry import migrate
            from registry.db import make_engine

            engine = make_engine(args.db)
            migrate.upgrade(engine)
            engine.dispose()
        key, model_ids, seed_keys = seed(workdir, env)
        auth = {"Authorization": f"Bearer {key}"}
        log = Log()
        stop = threading.Event()

        def reader(i: int) -> None:
            local = np.random.default_rng(100 + i)
            with httpx.Client(base_url=url, headers=auth, timeout=120) as http:
                while not stop.is_set():
                    mid = model_ids[int(local.integers(len(model_ids)))]
                    log.call(http, "GET similar", "GET", f"/v1/models/{mid}/similar", params={"k": 5})
                    log.call(http, "GET models", "GET", "/v1/models", params={"limit": 20})

        def writer(i: int) -> None:
            local = np.random.default_rng(200 + i)
            with httpx.Client(base_url=url, headers=auth, timeout=120) as http:
                while not stop.is_set():
                    mid = model_ids[int(local.integers(len(model_ids)))]
                    pick = local.choice(len(seed_keys), size=8, replace=False)
                    body = {
                        "evaluations": [
                            {"question": seed_keys[j], "score": float(local.random() < 0.5)} for j in pick
                        ]
                    }
                    log.call(http, "POST evaluations", "POST", f"/v1/models/{mid}/evaluations", json=body)

        port = args.port
        with serve(["-m", "api", "serve", "--port", str(port)], env, port) as url:
            threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.readers)]
            threads += [threading.Thread(target=writer, args=(i,)) for i in range(args.writers)]
            for t in threads:
                t.start()
            time.sleep(2.0)  # load before the job starts
            stages: dict[str, float] = {}
            with httpx.Client(base_url=url, headers=auth, timeout=120) as http:
                t_submit = time.monotonic()
                body = {
                    "kind": "import",
                    "params": {"path": "bench12k", "format": "normalised", "name": "bench"},
                }
                r = log.call(http, "POST jobs", "POST", "/v1/jobs", json=body)
                assert r is not None and r.status_code == 202, r.text if r is not None else "no answer"
                job_id = r.json()["id"]
                deadline = time.monotonic() + args.timeout
                rates: list[tuple[str, float]] = []
                while True:
                    g = log.call(http, "GET job", "GET", f"/v1/jobs/{job_id}")
                    job = g.json() if g is not None and g.status_code == 200 else None
                    if job is not None:
                        if job["stage"] and job["stage"] not in stages:
                            stages[job["stage"]] = time.monotonic() - t_submit
                        if job["rate"]:
                            rates.append((job["stage"], job["rate"]))
                        if job["state"] in ("succeeded", "failed", "cancelled"):
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the job did not finish in {args.timeout} s: {job}")
                    time.sleep(0.5)
                t_end = time.monotonic()
                stop.set()
                for t in threads:
                    t.join()
                total = http.get("/v1/models", params={"limit": 1}).json()["total"]
    during = [row for row in log.rows if t_submit <= row[0] <= t_end]
    endpoints: dict[str, Any] = {}
    for name in sorted({row[1] for row in log.rows}):
        rows = [row for row in during if row[1] == name]
        lat = sorted(row[3] for row in rows)
        errors = [row[2] for row in rows if not row[2].startswith("2")]
        endpoints[name] = {
            "requests": len(rows),
            "errors": len(errors),
            "error_statuses": sorted(set(errors)),
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))] if lat else None,
            "max_ms": 1000 * lat[-1] if lat else None,
        }
    return {
        "provenance": provenance(),
        "setup": {
            "database": "postgresql" if args.db else "sqlite",
            "questions": args.questions,
            "models": args.models,
            "evaluations": n_evals,
            "seed_models": SEED_MODELS,
            "readers": args.readers,
            "writers": args.writers,
            "question_texts": "synthetic; the job encodes them unless the shared query-encoding cache "
            "already holds them (a previous run): the 'question vectors' stage's length tells which",
            "chunk_evaluations": CHUNK_EVALUATIONS,
        },
        "job": {
            "state": job["state"],
            "error": job["error"],
            "seconds": t_end - t_submit,
            "stages_started_s": stages,
            "result": job["result"],
            "attempts": job["attempts"],
            "max_rate_by_stage": {s: max(r for st, r in rates if st == s) for s in {st for st, _ in rates}},
        },
        "models_after": total,
        "models_expected": SEED_MODELS + args.models,
        "during_job": endpoints,
        "requests_during_job": len(during),
        "errors_during_job": sum(e["errors"] for e in endpoints.values()),
        "errors_total": sum(1 for row in log.rows if not row[2].startswith("2")),
    }


def table(doc: dict[str, Any]) -> str:
    job, setup = doc["job"], doc["setup"]
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in job["stages_started_s"].items())
    lines = [
        f"import job: {setup['questions']} questions x {setup['models']} models "
        f"({setup['evaluations']} evaluations, {setup['database']}): {job['state']} in "
        f"{job['seconds']:.1f} s; stages at {stages}",
        f"{'endpoint (during the job)':<28}{'requests':>9}{'errors':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}",
    ]
    for name, e in doc["during_job"].items():
        fmt = lambda v: f"{v:9.0f}" if v is not None else f"{'-':>9}"  # noqa: E731
        lines.append(
            f"{name:<28}{e['requests']:>9}{e['errors']:>8}{fmt(e['p50_ms'])}{fmt(e['p95_ms'])}{fmt(e['max_ms'])}"
        )
    lines.append(
        f"requests during the job: {doc['requests_during_job']}, errors: {doc['errors_during_job']} "
        f"(all run: {doc['errors_total']}); models after: {doc['models_after']} "
        f"(expected {doc['models_expected']})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=12_000)
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--coverage", type=float, default=0.6, help="share of (model, question) pairs scored")
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--writers", type=int, default=1)
    ap.add_argument("--db", default=None, help="an empty PostgreSQL database URL (default: a SQLite file)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--timeout", type=float, default=900, help="most seconds the job may take")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "jobs.json")
    args = ap.parse_args(argv)
    doc = run(args)
    write_json(args.out, doc)
    print(table(doc))
    return 0 if doc["errors_during_job"] == 0 and doc["job"]["state"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
