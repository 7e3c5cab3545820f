"""Drift watch on real data, through the registry's own use case: false flags and detection.

Per source, a fresh embedded registry (SQLite + local Qdrant, the shipped encoder) is built from the
source's scores (`services.import_source`, every model registered with all its scores). Its probe set
(`GET /v1/probes?n=128`, the registry's own choice) is what every endpoint is re-probed on, through
`check_drift` exactly as `POST /v1/models/{id}/probes` runs it (tolerance and nearest-neighbour cap
read from the registered models, `min_shared` 32):

- own: model A's endpoint answers as A did (its stored scores on the probe questions it was scored
  on), with 0, 2 or 5% of them flipped (a stand-in for re-run noise). A flag is a false flag;
- other: A's endpoint now answers as another registered model B (B's stored scores on the probe
  questions): a silent substitution. A flag is a detection. Pairs are bucketed by how much A and B
  really disagree on the questions submitted, and variants of one model (lart's two prompt styles,
  `--group-suffix`) are counted apart: swapping one for the other is barely a change of behaviour.
Models with one constant score everywhere are left out (they have no fingerprint).

    python -m benchmarks.drift --data ../shared/data/zeroeval ../shared/data/lart
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import QUERY_CACHE, provenance, write_json
from benchmarks.fingerprint import groups_of
from encoder.data import EvalSource, load_source

log = logging.getLogger("benchmarks.drift")

FLIPS = (0.0, 0.02, 0.05)
BUCKETS = ((0.0, 0.05), (0.05, 0.10), (0.10, 0.20), (0.20, 1.01))


def bucket(rate: float) -> str:
    lo, hi = next(b for b in BUCKETS if b[0] <= rate < b[1])
    return f"{lo:.2f}-{min(hi, 1.0):.2f}"


def evaluate_source(
    src: EvalSource, probe_n: int, others: int, seed: int, group_pattern: str, min_shared: int
) -> dict[str, Any]:
    """Build a registry from `src`, then re-probe every model with its own and with others' scores."""
    from api.wiring import build_container
    from registry import services
    from registry.db import make_engine
    from registry.decisions.schemas import ProbeRequest
    from registry.decisions.service import ThresholdProvider
    from registry.decisions.service.drift import check_drift
    from registry.migrate import upgrade
    from registry.services.probes import probe_set
    from registry.settings import Settings

    rng = np.random.default_rng(seed)
    groups = groups_of(src.model_names, group_pattern)
    lab = np.asarray(src.labels, dtype=np.float64)  # (M, Q)
    with tempfile.TemporaryDirectory(prefix="locus-drift-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/registry.db",
            qdrant_path=f"{tmp}/qdrant",
            query_cache_dir=QUERY_CACHE,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        ctx = build_container(settings)
        try:
            t0 = time.perf_counter()
            services.import_source(ctx, src)
            built = time.perf_counter() - t0
            probes = probe_set(ctx, n=probe_n)
            col = {q: j for j, q in enumerate(src.question_ids)}
            keys = [q.key for q in probes.questions]
            prefix = f"{src.name}:"
            pq = np.asarray([col[k.removeprefix(prefix)] for k in keys])  # probe columns of `lab`
            with ctx.session_factory() as s:
                from registry import repositories as repo

                ids = {r.name: r.id for r in repo.get_models_by_names(s, src.model_names).values()}
            thresholds = ThresholdProvider()
            tol, _ = thresholds.get_tolerance(ctx)
            seen = lab[:, pq]  # (M, P) NaN where a model was not scored
            constant = np.nanmin(lab, axis=1) == np.nanmax(lab, axis=1)
            models = [
                m for m in range(len(src.model_names)) if not constant[m] and (~np.isnan(seen[m])).any()
            ]
            own: dict[str, Counter[str]] = {f"{f:.2f}": Counter() for f in FLIPS}
            other: dict[str, Counter[str]] = {}
            false_flags: list[dict[str, Any]] = []
            missed_same: list[dict[str, Any]] = []
            t1 = time.perf_counter()

            def probe(m: int, y: np.ndarray, cols: np.ndarray) -> Any:
                body = {
                    "evaluations": [
                        {"question": keys[c], "score": float(v)} for c, v in zip(cols, y, strict=True)
                    ],
                    "min_shared": min_shared,
                }
                return check_drift(
                    ctx, ids[src.model_names[m]], ProbeRequest.model_validate(body), thresholds
                )

            for a in models:
                have = np.flatnonzero(~np.isnan(seen[a]))
                for f in FLIPS:
                    y = seen[a, have].copy()
                    at = rng.choice(len(have), size=round(f * len(have)), replace=False)
                    y[at] = 1.0 - y[at]
                    check = probe(a, y, have)
                    own[f"{f:.2f}"][check.verdict] += 1
                    if check.verdict == "different":
                        false_flags.append({"model": src.model_names[a], "flip": f, "why": check.why})
                pool = [b for b in models if b != a]
                for b in rng.choice(pool, size=min(others, len(pool)), replace=False):
                    cols = np.flatnonzero(~np.isnan(seen[b]))
                    y = seen[b, cols]
                    both = ~np.isnan(seen[a, cols])
                    true_rate = (
                        float(np.abs(seen[a, cols[both]] - y[both]).mean()) if both.any() else float("nan")
                    )
                    kind = "variant" if groups[a] == groups[b] else "distinct"
                    check = probe(a, y, cols)
                    if check.verdict == "same":  # a substitution passed as the registered model
                        missed_same.append(
                            {
                                "model": src.model_names[a],
                                "endpoint": src.model_names[b],
                                "rate": check.evidence.rate,
                                "shared": check.evidence.shared_questions,
                                "upper": check.evidence.upper,
                                "same_below": check.same_below,
                            }
                        )
                    for key in (
                        kind,
                        f"{kind} {bucket(true_rate)}" if np.isfinite(true_rate) else f"{kind} none",
                    ):
                        other.setdefault(key, Counter())[check.verdict] += 1
            seconds = time.perf_counter() - t1
        finally:
            ctx.close()

    def rates(c: Counter[str]) -> dict[str, Any]:
        n = sum(c.values())
        return {"trials": n, **dict(c), "flagged": c["different"] / n if n else None}

    own_all: Counter[str] = sum(own.values(), Counter())
    return {
        "models": len(models),
        "probe": {"n": probes.n, "version": probes.version},
        "tolerance": {"same": tol.same, "related": tol.related, "alpha": tol.alpha, "min_shared": min_shared},
        "own": {f: rates(c) for f, c in own.items()},
        "false_flags": len(false_flags),
        "false_flag_rate": own_all["different"] / max(1, sum(own_all.values())),
        "false_flag_cases": false_flags[:20],
        "other": {k: rates(c) for k, c in sorted(other.items())},
        "substitutions_judged_same": missed_same,
        "build_seconds": round(built, 1),
        "probe_seconds": round(seconds, 1),
    }


def table(doc: dict[str, Any]) -> str:
    head = f"{'source':<10} {'endpoint':<26} {'trials':>7} {'flagged':>8} {'same':>6} {'undet':>6}"
    lines = [head, "-" * len(head)]
    for name, s in doc["sources"].items():
        for f, r in s["own"].items():
            lines.append(
                f"{name:<10} {'own, ' + f + ' flipped':<26} {r['trials']:>7} {r['flagged']:>8.3f} "
                f"{r.get('same', 0):>6} {r.get('undetermined', 0):>6}"
            )
        for k, r in s["other"].items():
            lines.append(
                f"{name:<10} {'other ' + k:<26} {r['trials']:>7} {r['flagged']:>8.3f} "
                f"{r.get('same', 0):>6} {r.get('undetermined', 0):>6}"
            )
        tol = s["tolerance"]
        lines.append(
            f"{name:<10} false flags {s['false_flags']} (rate {s['false_flag_rate']:.3f}); "
            f"substitutions judged same {len(s['substitutions_judged_same'])}; "
            f"tolerance same {tol['same']:.3f}, related {tol['related']:.3f}; probe set {s['probe']['n']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", help="source folders (normalised layout)")
    ap.add_argument("--probe", type=int, default=128, help="probe set size (GET /v1/probes?n=)")
    ap.add_argument("--others", type=int, default=3, help="substitute models tried per model")
    ap.add_argument("--min-shared", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--group-suffix",
        default=r"_(zero|one)_shot$",
        help="regex removed from a model name to find variants of one model (lart's prompt styles)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/drift.json"))
    ap.add_argument("--print", dest="print_only", action="store_true")
    args = ap.parse_args(argv)
    if args.print_only:
        print(table(json.loads(args.out.read_text())))
        return
    if not args.data:
        ap.error("--data is required (unless --print)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc: dict[str, Any] = {
        **provenance(),
        "config": {k: str(v) for k, v in vars(args).items()},
        "sources": {},
    }
    for path in args.data:
        src = load_source(path)
        doc["sources"][src.name] = evaluate_source(
            src, args.probe, args.others, args.seed, args.group_suffix, args.min_shared
        )
        write_json(args.out, doc)
        log.info("%s done", src.name)
    print(table(doc))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
