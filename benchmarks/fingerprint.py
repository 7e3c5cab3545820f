"""Fingerprint verdicts on real data: never a confident wrong `same`, `same` where the evidence allows.

For every model A of each source (models with one constant score are skipped: they have no
fingerprint), an "endpoint" is A's scores on `--probe` common random questions with a share of them
flipped (0, 2, 5, 10%: a stand-in for the noise of re-running a model). It is judged against the
registered models exactly as `POST /v1/fingerprint` judges candidates with shared questions
(`registry.decisions.evidence`, the tolerance read from the registered models' own disagreements on
their other questions, at most one `same` after the ambiguity test):

- registered: A is in the registry. `same` naming A is a true positive; `same` naming another model
  is a wrong `same`;
- unregistered: A is not in the registry. Any `same` is wrong.
Models that are variants of one model (lart's two prompt styles of one model; `--group-suffix`) are
not "another model": a `same` naming A's variant is counted apart (the honest answer is `related`).

    python -m benchmarks.fingerprint --data ../shared/data/{lart,mmlu_pro,zeroeval,alpaca_eval_v2}
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import provenance, write_json
from encoder.data import EvalSource, load_source, split_questions
from registry.decisions.evidence import (
    Tolerance,
    bounds,
    candidate_cap,
    closer_than,
    distinct_disagreements,
    nearest_disagreements,
    shared_evidence,
    tolerance_from_pairs,
    verdict,
)

log = logging.getLogger("benchmarks.fingerprint")

FLIPS = (0.0, 0.02, 0.05, 0.10)


def groups_of(names: list[str], pattern: str) -> list[str]:
    """A group label per model: the name with the variant suffix (regex) removed."""
    rx = re.compile(pattern) if pattern else None
    return [rx.sub("", n) if rx else n for n in names]


def judge_endpoint(
    endpoint: np.ndarray, registered: np.ndarray, tol: Tolerance, nearest: np.ndarray, cap: bool = True
) -> tuple[str, int | None]:
    """(overall verdict, index of the model a `same` names or None), as the fingerprint service judges:
    per candidate a test on the shared scores (its `same` capped at half its nearest registered
    neighbour's disagreement; `cap=False` drops that cap, an ablation the service never runs), then at
    most one `same` survives the sign test."""
    evs = [shared_evidence(registered[i], endpoint, tol.alpha) for i in range(len(registered))]
    caps = [candidate_cap(float(nearest[i])) if cap else None for i in range(len(registered))]
    verdicts = [verdict(ev, tol, caps[i]) for i, ev in enumerate(evs)]
    same = [i for i, v in enumerate(verdicts) if v == "same"]
    if len(same) > 1:
        same.sort(key=lambda i: evs[i].rate)
        best = same[0]
        if all(closer_than(endpoint, registered[best], registered[o], tol.alpha) for o in same[1:]):
            return "same", best
        return "undetermined", None
    if same:
        return "same", same[0]
    order = {"undetermined": 0, "related": 1, "different": 2}
    return min((v for v in verdicts), key=lambda v: order[v]), None


def evaluate_source(
    src: EvalSource,
    probe: int,
    seed: int,
    repeats: int,
    group_pattern: str,
    alpha: float,
    max_same: float,
    cap: bool = True,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    lab = src.labels
    split = split_questions(src, seed=seed)
    groups = groups_of(src.model_names, group_pattern)
    constant = np.nanmin(lab, axis=1) == np.nanmax(lab, axis=1)
    held = np.sort(np.concatenate([split.val, split.test]))  # probes: never read by the tolerance
    common = held[(~np.isnan(lab[:, held])).all(axis=0)]
    if len(common) < probe:
        # uneven coverage (zeroeval): use the questions the most models were scored on
        cover = (~np.isnan(lab[:, held])).sum(axis=0)
        common = held[cover >= np.quantile(cover, 0.5)]
    keep_models = np.flatnonzero(~constant & (~np.isnan(lab[:, common])).sum(axis=1).astype(bool))
    out: dict[str, Any] = {"models": len(keep_models), "probe": probe, "by_flip": {}}
    counts: dict[str, Counter[str]] = {f"{f:.2f}": Counter() for f in FLIPS}
    distinct = distinct_disagreements(lab[keep_models][:, split.train])
    tol_all = tolerance_from_pairs(distinct, max_same=max_same, alpha=alpha)
    out["tolerance"] = {"same": tol_all.same, "related": tol_all.related, "floor": tol_all.floor}
    # what `same` at 5% flips would need: the upper bound with 5% of the probes disagreeing, and how many
    # distinct registered pairs are closer than that (each a wrong `same` such a tolerance would allow)
    need = bounds(round(0.05 * probe), probe, alpha)[1]
    out["same_at_5pct_needs"] = {
        "tolerance_above": need,
        "distinct_pairs": len(distinct),
        "distinct_pairs_below": int((distinct < need).sum()),
        "closest_distinct_pair": float(distinct.min()) if len(distinct) else None,
    }
    t0 = time.perf_counter()
    for _ in range(repeats):
        for a in keep_models:
            have = common[~np.isnan(lab[a, common])]
            ms = [m for m in keep_models if (~np.isnan(lab[m, have])).all()]
            if len(have) < probe or a not in ms:
                continue
            q = np.sort(rng.choice(have, size=probe, replace=False))
            others = [m for m in ms if m != a]
            # the registry without A reads its tolerance from the other models only
            tol_wo = tolerance_from_pairs(
                distinct_disagreements(lab[others][:, split.train]), max_same=max_same, alpha=alpha
            )
            near_all = nearest_disagreements(lab[ms][:, split.train])
            near_wo = nearest_disagreements(lab[others][:, split.train])
            for f in FLIPS:
                y = lab[a, q].astype(np.float64).copy()
                at = rng.choice(probe, size=round(f * probe), replace=False)
                y[at] = 1.0 - y[at]
                c = counts[f"{f:.2f}"]
                v, who = judge_endpoint(y, lab[np.asarray(ms)][:, q], tol_all, near_all, cap)
                named = None if who is None else ms[who]
                if v == "same" and named == a:
                    c["registered_same_right"] += 1
                elif v == "same" and groups[named] == groups[a]:
                    c["registered_same_variant"] += 1
                elif v == "same":
                    c["registered_same_wrong"] += 1
                else:
                    c[f"registered_{v}"] += 1
                c["registered_trials"] += 1
                v2, who2 = judge_endpoint(y, lab[np.asarray(others)][:, q], tol_wo, near_wo, cap)
                named2 = None if who2 is None else others[who2]
                if v2 == "same" and groups[named2] == groups[a]:
                    c["unregistered_same_variant"] += 1
                elif v2 == "same":
                    c["unregistered_same_wrong"] += 1
                else:
                    c[f"unregistered_{v2}"] += 1
                c["unregistered_trials"] += 1
    for f, c in counts.items():
        n = max(1, c["registered_trials"])
        out["by_flip"][f] = {
            **dict(c),
            "same_tpr": c["registered_same_right"] / n,
            "wrong_same": c["registered_same_wrong"] + c["unregistered_same_wrong"],
        }
    out["seconds"] = time.perf_counter() - t0
    return out


def table(doc: dict[str, Any]) -> str:
    head = (
        f"{'source':<15} {'flip':>5} {'tol':>6} {'trials':>7} {'TPR':>6} {'wrong same':>10} "
        f"{'variant same':>12} {'undet (reg)':>11} {'undet (unreg)':>13}"
    )
    lines = [head, "-" * len(head)]
    for name, s in doc["sources"].items():
        for f, r in s["by_flip"].items():
            lines.append(
                f"{name:<15} {f:>5} {s['tolerance']['same']:>6.3f} {r.get('registered_trials', 0):>7} "
                f"{r['same_tpr']:>6.3f} {r['wrong_same']:>10} "
                f"{r.get('registered_same_variant', 0) + r.get('unregistered_same_variant', 0):>12} "
                f"{r.get('registered_undetermined', 0):>11} {r.get('unregistered_undetermined', 0):>13}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--probe", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--max-same", type=float, default=0.12)
    ap.add_argument(
        "--group-suffix",
        default=r"_(zero|one)_shot$",
        help="regex removed from a model name to find variants of one model (lart's prompt styles)",
    )
    ap.add_argument(
        "--no-candidate-cap",
        dest="cap",
        action="store_false",
        help="ablation: drop the per-candidate cap (half the nearest registered neighbour's disagreement)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fingerprint.json"))
    ap.add_argument("--print", dest="print_only", action="store_true")
    args = ap.parse_args(argv)
    if args.print_only:
        print(table(json.loads(args.out.read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc: dict[str, Any] = {
        **provenance(),
        "config": {k: str(v) for k, v in vars(args).items()},
        "sources": {},
    }
    for path in args.data:
        src = load_source(path)
        doc["sources"][src.name] = evaluate_source(
            src, args.probe, args.seed, args.repeats, args.group_suffix, args.alpha, args.max_same, args.cap
        )
        write_json(args.out, doc)
        log.info("%s done", src.name)
    print(table(doc))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
