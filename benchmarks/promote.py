"""Promote and roll back under load: zero failed requests, zero mixed-encoder answers during the switch.

A served registry (embedded default: SQLite + qdrant-client local mode, the shipped checkpoint, one
uvicorn process with one job worker) holds `--models` models, each scored 0/1 on 96 of 128 questions.
A second, randomly initialised full-size checkpoint is registered as a candidate, then:

1. reference answers are taken under the serving encoder for `--sample` models: `similar` (k=5) and
   one `route` over those models;
2. `POST /v1/encoders/{id}/promote` starts the switch (a job); while it runs, `--concurrency` clients
   keep sending the same reads and one client keeps registering new models (another provider, which
   the reads filter out, so the reference answers stay valid);
3. once the job has succeeded, reference answers are taken again under the new encoder;
4. the same for `POST /v1/encoders/rollback`, then for a reindex job (`POST /v1/jobs {"kind": "reindex"}`:
   the serving encoder's vectors rebuilt from SQL into a new collection generation, then switched to).

Every read answered during a switch must equal, exactly, the reference answer of the encoder its
response names (`X-Locus-Encoder` and the body's `fingerprint`); an answer equal to neither, or one
whose header and body disagree, counts as mixed. Every request must succeed (2xx).

    nice -n 10 python -m benchmarks.promote --models 300
Writes benchmarks/results/promote.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import provenance, write_json
from benchmarks.api import free_port
from benchmarks.load import seed, serve

PHASES = ("promote", "rollback", "reindex")
KEEPALIVE_S = 2.0
PROVIDERS = ["acme", "zeta", "nova", "orbit"]  # what benchmarks.load seeds; writers use another one


def candidate_checkpoint(directory: Path, seed_: int) -> Path:
    import torch

    from encoder.checkpoint import save_checkpoint
    from encoder.config import LocusConfig
    from encoder.model import LocusModel

    torch.manual_seed(seed_)
    save_checkpoint(LocusModel(LocusConfig()), directory)
    return directory


def _similar_key(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((i["model"]["id"], round(i["distance"], 5)) for i in body["items"])


def _route_key(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((r["model"]["id"], round(r["p_correct"], 5)) for r in body["routes"][0]["ranked"])


class Reads:
    """The reads the clients send, and how an answer is reduced to what must match a reference."""

    def __init__(self, sample: list[str]) -> None:
        self.sample = sample
        self.filters = "&".join(f"provider={p}" for p in PROVIDERS)

    def request(self, n: int) -> tuple[str, str, str, Any]:
        if n % 4 == 3:
            body = {
                "queries": ["Which model proves this inequality about primes best?"],
                "candidates": self.sample,
            }
            return "route", "POST", "/v1/route", body
        model = self.sample[n % len(self.sample)]
        return f"similar:{model}", "GET", f"/v1/models/{model}/similar?k=5&{self.filters}", None

    @staticmethod
    def key(name: str, body: dict[str, Any]) -> tuple[Any, ...]:
        return _route_key(body) if name == "route" else _similar_key(body)


def references(client: httpx.Client, reads: Reads) -> tuple[str, dict[str, tuple[Any, ...]]]:
    out: dict[str, tuple[Any, ...]] = {}
    encoder = ""
    for n in range(len(reads.sample) * 4):
        name, method, path, body = reads.request(n)
        if name in out:
            continue
        r = client.request(method, path, json=body)
        r.raise_for_status()
        encoder = r.headers["x-locus-encoder"]
        out[name] = Reads.key(name, r.json())
    return encoder, out


async def drive(
    url: str, headers: dict[str, str], reads: Reads, concurrency: int, job_url: str, keys: list[str]
) -> dict[str, Any]:
    """Reads and writes until the job at `job_url` has finished; every answer recorded."""
    answers: list[tuple[str, str, str, tuple[Any, ...]]] = []  # (read, header, body fingerprint, key)
    failures: list[str] = []
    writes = 0
    done = asyncio.Event()
    counter = itertools.count()
    job: dict[str, Any] = {}
    # Keep-alive shorter than uvicorn's 5 s: reusing a connection the server is closing fails the request
    # with a ReadError that has nothing to do with the switch.
    limits = httpx.Limits(max_connections=concurrency + 2, keepalive_expiry=KEEPALIVE_S)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:

        async def reader() -> None:
            while not done.is_set():
                name, method, path, body = reads.request(next(counter))
                try:
                    r = await client.request(method, path, json=body)
                except httpx.HTTPError as exc:
                    failures.append(f"{name}: {type(exc).__name__}")
                    continue
                if r.status_code >= 300:
                    failures.append(f"{name}: {r.status_code} {r.text[:200]}")
                    continue
                payload = r.json()
                answers.append(
                    (
                        name,
                        r.headers.get("x-locus-encoder", ""),
                        payload["fingerprint"],
                        Reads.key(name, payload),
                    )
                )

        async def writer() -> None:
            nonlocal writes
            while not done.is_set():
                body = {
                    "name": f"late-{uuid.uuid4().hex}",
                    "provider": "late-writer",
                    "evaluations": [
                        {"question": k, "score": float((writes + i) % 2)} for i, k in enumerate(keys[:64])
                    ],
                }
                r = await client.post("/v1/models", json=body)
                if r.status_code >= 300:
                    failures.append(f"register: {r.status_code} {r.text[:200]}")
                else:
                    writes += 1

        async def watch() -> None:
            while True:
                r = await client.get(job_url)
                job.update(r.json())
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    await asyncio.sleep(1.5)  # keep reading just past the switch
                    done.set()
                    return
                await asyncio.sleep(0.2)

        started = time.perf_counter()
        await asyncio.gather(watch(), writer(), *(reader() for _ in range(concurrency)))
    return {
        "answers": answers,
        "failures": failures,
        "writes": writes,
        "job": job,
        "seconds": time.perf_counter() - started,
    }


def judge(run: dict[str, Any], refs: dict[str, dict[str, tuple[Any, ...]]]) -> dict[str, Any]:
    by_encoder: dict[str, int] = {}
    mixed = 0
    examples: list[str] = []
    for name, header, body_fp, key in run["answers"]:
        by_encoder[header] = by_encoder.get(header, 0) + 1
        ref = refs.get(header, {}).get(name)
        if not header.startswith(body_fp) or ref != key:
            mixed += 1
            if len(examples) < 5:
                examples.append(
                    f"{name} answered as {header} (body {body_fp[:12]}): matches reference {ref == key}"
                )
    return {
        "reads": len(run["answers"]),
        "writes": run["writes"],
        "failed": len(run["failures"]),
        "failures": run["failures"][:10],
        "mixed": mixed,
        "mixed_examples": examples,
        "answers_by_encoder": by_encoder,
        "job_state": run["job"].get("state"),
        "job_error": run["job"].get("error"),
        "job_result": run["job"].get("result"),
        "seconds": round(run["seconds"], 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="locus-promote-") as tmp:
        workdir = Path(tmp)
        env, key, ids, keys, _ = seed(workdir, args.models)
        cand_path = candidate_checkpoint(workdir / "candidate", 7)
        headers = {"Authorization": f"Bearer {key}"}
        reads = Reads(ids[: args.sample])
        port = free_port()
        out: dict[str, Any] = {"models": args.models, "sample": args.sample, "concurrency": args.concurrency}
        env = {**env, "LOCUS_JOB_WORKERS": "1", "LOCUS_LOG_LEVEL": "info"}
        with (
            serve(["-m", "api", "serve", "--port", str(port)], env, port, workdir / "server.log") as url,
            httpx.Client(
                base_url=url, headers=headers, timeout=120, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S)
            ) as client,
        ):
            refs: dict[str, dict[str, tuple[Any, ...]]] = {}
            enc, refs_old = references(client, reads)
            refs[enc] = refs_old
            r = client.post("/v1/encoders", json={"path": str(cand_path)})
            r.raise_for_status()
            cand = r.json()
            for phase, path, body in (
                ("promote", f"/v1/encoders/{cand['id']}/promote", None),
                ("rollback", "/v1/encoders/rollback", None),
                ("reindex", "/v1/jobs", {"kind": "reindex", "params": {}}),
            ):
                r = client.post(path, json=body)
                r.raise_for_status()
                result = asyncio.run(
                    drive(url, headers, reads, args.concurrency, r.headers["Location"], keys)
                )
                enc, after = references(client, reads)
                refs[enc] = after
                out[phase] = judge(result, refs)
                print(f"  {phase}: {_row(out[phase])}", flush=True)
            out["encoders"] = client.get("/v1/encoders").json()
    return out


def _row(r: dict[str, Any]) -> str:
    return (
        f"reads {r['reads']:>6}  writes {r['writes']:>4}  failed {r['failed']:>3}  mixed {r['mixed']:>3}  "
        f"job {r['job_state']} in {r['seconds']:.1f} s  by encoder {r['answers_by_encoder']}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=300)
    ap.add_argument("--sample", type=int, default=12, help="models whose reads are checked")
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/promote.json"))
    args = ap.parse_args(argv)
    doc = {"provenance": provenance(), "args": vars(args) | {"out": str(args.out)}, **run(args)}
    write_json(args.out, doc)
    ok = all(
        doc[p]["failed"] == 0 and doc[p]["mixed"] == 0 and doc[p]["job_state"] == "succeeded" for p in PHASES
    )
    print(f"targets (0 failed, 0 mixed, every switch succeeded): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
