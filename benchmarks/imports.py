"""Import speed: an lm-eval `--log_samples` log vs the normalised CSV layout, same evaluations, same run.

Builds both layouts from the same synthetic scores (M models x Q questions, default 20 x 5,000 =
100,000 evaluations) over real question texts from a shared source, warms the on-disk query-encoding
cache (so neither import pays for encoding), then times each import end to end: reading the files
(`api.importing.load_batch`) and writing them (`registry.services.import_batch`) into a fresh SQLite
database and local Qdrant folder, with the shipped encoder. The lm-eval log is what lm-eval writes
per model: a results JSON and a samples JSONL whose lines have lm-eval's own shape (taken from the
fixture made by the real tool).

    python -m benchmarks.imports --data ../shared/data/zeroeval [--models 20 --questions 5000 --repeats 2]

Target (issue 11): the lm-eval import runs at no less than half the speed of the normalised-CSV one.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from api.importing import load_batch
from api.wiring import build_container
from benchmarks._common import QUERY_CACHE, ROOT, provenance, write_json
from encoder.data import load_source
from registry import services
from registry.importers import ImportOptions
from registry.settings import Settings

FIXTURE = ROOT / "tests" / "fixtures" / "lm_eval" / "seed1"
TASK = "bench_mc"


def write_normalised(root: Path, texts: list[str], models: list[str], labels: np.ndarray) -> Path:
    out = root / "normalised" / TASK
    out.mkdir(parents=True)
    with (out / "questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question_id", "text", "category"])
        w.writerows([str(j), t, TASK] for j, t in enumerate(texts))
    with (out / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "question_id", "label"])
        for i, m in enumerate(models):
            w.writerows([m, str(j), int(y)] for j, y in enumerate(labels[i]))
    return out


def write_lm_eval(root: Path, texts: list[str], models: list[str], labels: np.ndarray) -> Path:
    """One lm-eval output folder per model, in the shape lm-eval 0.4 writes them."""
    results_t = json.loads(next(FIXTURE.glob("results_*.json")).read_text())
    sample_t = json.loads(next(FIXTURE.glob("samples_toy_mc_2026*.jsonl")).read_text().splitlines()[0])
    cfg = dict(results_t["configs"]["toy_mc"], task=TASK, doc_to_text="{{question}}")
    out = root / "lm_eval"
    for i, m in enumerate(models):
        stamp = f"2026-11-29T00-00-{i:02d}.000000"
        d = out / m
        d.mkdir(parents=True)
        res = dict(results_t)
        res.update(
            results={TASK: {"alias": TASK, "acc,none": float(labels[i].mean()), "acc_stderr,none": 0.0}},
            configs={TASK: cfg},
            versions={TASK: 1.0},
            **{"n-shot": {TASK: 0}, "n-samples": {TASK: {"original": len(texts), "effective": len(texts)}}},
            config=dict(results_t["config"], model_args={"pretrained": m}),
            task_hashes={TASK: "0" * 64},
        )
        (d / f"results_{stamp}.json").write_text(json.dumps(res, indent=2))
        with (d / f"samples_{TASK}_{stamp}.jsonl").open("w") as f:
            for j, t in enumerate(texts):
                s = dict(sample_t)
                s["doc_id"] = j
                s["doc"] = {"id": f"q-{j}", "question": t, "choices": ["A", "B", "C", "D"], "label": 0}
                s["arguments"] = {
                    f"gen_args_{k}": {"arg_0": t, "arg_1": f" {c}"} for k, c in enumerate("ABCD")
                }
                s["acc"] = float(labels[i, j])
                s["acc_norm"] = float(labels[i, j])
                f.write(json.dumps(s) + "\n")
    return out


def time_import(path: Path, fmt: str, settings: Settings) -> dict[str, Any]:
    t0 = time.perf_counter()
    batch = load_batch(path, fmt, ImportOptions(), allow_pickle=False)
    t1 = time.perf_counter()
    container = build_container(settings)
    try:
        t2 = time.perf_counter()
        report = services.import_batch(container, batch)
        t3 = time.perf_counter()
    finally:
        container.close()
    return {
        "read_s": t1 - t0,
        "write_s": t3 - t2,
        "total_s": (t1 - t0) + (t3 - t2),
        "evaluations": report.evaluations,
        "questions": report.questions_created,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a source folder whose question texts to use")
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--questions", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "imports.json")
    args = ap.parse_args()

    source = load_source(args.data)
    texts = list(dict.fromkeys(source.texts))[: args.questions]
    rng = np.random.default_rng(0)
    models = [f"bench-model-{i:02d}" for i in range(args.models)]
    labels = (rng.random((len(models), len(texts))) < rng.uniform(0.3, 0.8, (len(models), 1))).astype(
        np.float32
    )
    runs: dict[str, list[dict[str, Any]]] = {"normalised-csv": [], "lm-eval": []}
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        root = Path(tmp)
        paths = {
            "normalised-csv": write_normalised(root, texts, models, labels),
            "lm-eval": write_lm_eval(root, texts, models, labels),
        }
        sizes = {k: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for k, p in paths.items()}
        # Warm the on-disk encoding cache with these texts (the target is measured with it warm).
        warm = Settings(
            database_url=f"sqlite:///{root / 'warm.db'}",
            qdrant_path=str(root / "warm_q"),
            query_cache_dir=QUERY_CACHE,
        )
        time_import(paths["normalised-csv"], "normalised", warm)
        for r in range(args.repeats):
            for name, fmt in (("normalised-csv", "normalised"), ("lm-eval", "lm-eval")):
                settings = Settings(
                    database_url=f"sqlite:///{root / f'{name}{r}.db'}",
                    qdrant_path=str(root / f"{name}{r}_q"),
                    query_cache_dir=QUERY_CACHE,
                )
                runs[name].append(time_import(paths[name], fmt, settings))
    best = {k: min(v, key=lambda x: x["total_s"]) for k, v in runs.items()}
    n = len(models) * len(texts)
    ratio = best["normalised-csv"]["total_s"] / best["lm-eval"]["total_s"]  # lm-eval speed / CSV speed
    doc = {
        "benchmark": "imports",
        "provenance": provenance(),
        "config": {
            "data": args.data,
            "models": len(models),
            "questions": len(texts),
            "evaluations": n,
            "repeats": args.repeats,
            "database": "sqlite",
            "encoder": "shipped checkpoint",
            "file_bytes": sizes,
        },
        "runs": runs,
        "best": best,
        "evaluations_per_s": {k: n / v["total_s"] for k, v in best.items()},
        "lm_eval_speed_over_csv_speed": ratio,
        "target": ">= 0.5",
        "met": ratio >= 0.5,
    }
    write_json(args.out, doc)
    print(f"{n:,} evaluations ({len(models)} models x {len(texts)} questions), best of {args.repeats}:")
    print(f"{'layout':<16}{'read s':>9}{'write s':>9}{'total s':>9}{'evals/s':>10}")
    for k, v in best.items():
        print(f"{k:<16}{v['read_s']:>9.2f}{v['write_s']:>9.2f}{v['total_s']:>9.2f}{n / v['total_s']:>10,.0f}")
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"lm-eval speed / normalised-CSV speed = {ratio:.2f} (target >= 0.5: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
