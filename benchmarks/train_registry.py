"""Train an encoder from the registry's own evaluations, through the API, and time it.

Builds an embedded registry from the shared sources (`locus-registry import` for each), serves it
(one uvicorn process, one job worker), submits `POST /v1/jobs {"kind": "train"}` and waits for the job.
The job trains on every benchmark the registry holds, holds out 20% of each benchmark's models and the
test questions, and compares the trained encoder with the one in service (the shipped checkpoint) on
those held-out models and test questions (`encoder.evaluation`, the geometry benchmark's code).
With `--weights serving` the job trains nothing and refits only the serving encoder's stored-vector
metric on the registry's (non-held-out) models.

    nice -n 10 python -m benchmarks.train_registry \
        --data ../shared/data/lart ../shared/data/mmlu_pro \
               ../shared/data/zeroeval ../shared/data/alpaca_eval_v2

Target (issue 10): the job finishes within 30 minutes on the 2-core machine. The question-encoding cache
must be warm for the import to be quick; the train job itself never encodes a question (it reads the
encodings from the registry's index). Writes benchmarks/results/train_registry.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import QUERY_CACHE, ROOT, provenance, write_json
from benchmarks.api import free_port
from benchmarks.load import serve


def cli(args: list[str], env: dict[str, str]) -> str:
    exe = Path(sys.executable).with_name("locus-registry")
    done = subprocess.run(
        [str(exe), *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"locus-registry {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="locus-train-") as tmp:
        workdir = Path(tmp)
        env = {
            "LOCUS_DATABASE_URL": f"sqlite:///{workdir / 'registry.db'}",
            "LOCUS_QDRANT_PATH": str(workdir / "qdrant"),
            "LOCUS_QUERY_CACHE_DIR": str(QUERY_CACHE),
            "LOCUS_JOB_DIR": str(workdir / "jobs"),
            "LOCUS_ENCODER_DIR": str(workdir / "encoders"),
            "LOCUS_MAX_ITEMS": "10000000",
            "LOCUS_JOB_WORKERS": "1",
            "LOCUS_LOG_LEVEL": "info",
            "HF_HUB_OFFLINE": "1",
        }
        imported = {}
        for path in args.data:
            t = time.perf_counter()
            cli(["import", str(path)], env)
            imported[Path(path).name] = round(time.perf_counter() - t, 1)
            print(f"  imported {path} in {imported[Path(path).name]} s", flush=True)
        key = (
            cli(["keys", "create", "--name", "bench", "--scopes", "read,write,admin"], env)
            .strip()
            .split()[-1]
        )
        port = free_port()
        params = {"steps": args.steps, "seed": args.seed, "holdout_models": 0.2, "weights": args.weights}
        with (
            serve(["-m", "api", "serve", "--port", str(port)], env, port, workdir / "server.log") as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client,
        ):
            started = time.perf_counter()
            r = client.post("/v1/jobs", json={"kind": "train", "params": params})
            r.raise_for_status()
            location = r.headers["Location"]
            job: dict[str, Any] = {}
            while True:
                job = client.get(location).json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(5)
            wall = time.perf_counter() - started
            report = None
            if job["state"] == "succeeded":
                report = client.get(f"/v1/encoders/{job['result']['encoder_id']}").json()["report"]
    return {
        "imports_seconds": imported,
        "params": params,
        "job_state": job["state"],
        "job_error": job.get("error"),
        "job_wall_seconds": round(wall, 1),
        "target_seconds": 1800,
        "report": report,
    }


def table(doc: dict[str, Any]) -> str:
    weights = (doc.get("params") or {}).get("weights", "train")
    lines = [
        f"train job (weights={weights}): {doc['job_state']} in {doc['job_wall_seconds']:.0f} s "
        "(target <= 1800 s)"
    ]
    rep = doc.get("report") or {}
    cols = ("pearson", "acc_diff_pearson", "routing_hit1", "best_single_hit1", "correctness_acc")
    lines.append(f"{'source':16} {'encoder':8} " + " ".join(f"{c[:14]:>14}" for c in cols))
    for name, row in (rep.get("comparison") or {}).items():
        for side in ("trained", "serving"):
            vals = " ".join(
                f"{row[side][c]:>14.3f}" if row[side].get(c) is not None else f"{'-':>14}" for c in cols
            )
            lines.append(f"{name:16} {side:8} {vals}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--weights",
        choices=["train", "serving"],
        default="train",
        help="serving: the job trains nothing and refits only the serving encoder's stored-vector metric",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_registry.json"))
    args = ap.parse_args(argv)
    doc = {
        "provenance": provenance(),
        "args": {**vars(args), "data": [str(p) for p in args.data], "out": str(args.out)},
    }
    doc |= run(args)
    write_json(args.out, doc)
    print(table(doc))
    return 0 if doc["job_state"] == "succeeded" and doc["job_wall_seconds"] <= 1800 else 1


if __name__ == "__main__":
    raise SystemExit(main())
