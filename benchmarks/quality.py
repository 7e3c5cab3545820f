"""Routing and correctness quality of LOCUS against the baselines, on real sources, over seeds.

Per seed: split every source's questions train/val/test by category and hold out ~20% of its models
(never seen by any training), train ONE LOCUS model on all sources jointly (cached under --runs, so a
re-run does not retrain), fit the MF / IRT shared parts on the training models' train-question
evaluations, then for each source and K embed / place EVERY model from the same K anchor
train-question evaluations and score TEST questions. Nothing is tuned on test questions: LOCUS
early-stops on validation questions, MF / IRT on held-out train pairs, k-NN uses a fixed k.

Run from the repository root:
    nice -n 10 python -m benchmarks.quality --data /work/shared/data/lart ... --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import load_sources, mean_sd, provenance, write_json
from encoder import metrics
from encoder.baselines import (
    EmbedderRouter,
    KnnRouter,
    LatentConfig,
    LatentRouter,
    MeanScoreRouter,
    Router,
)
from encoder.checkpoint import load_checkpoint, save_checkpoint
from encoder.config import LocusConfig
from encoder.data import EvalSource
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.train import TrainConfig, TrainSource, prepare_source, train

log = logging.getLogger("benchmarks.quality")

DEFAULT_KS = (32, 64, 128, 256, 1024)
METHODS = ("locus", "mf", "irt", "knn", "best_single")
REFERENCES = ("random", "oracle")


def anchor_matrix(ts: TrainSource, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shared anchors: question columns and an (M, n) label matrix every method places models from.

    Every model uses its labels on k shared random train questions; a model with no label on any
    anchor (uneven task coverage) falls back to k of its own train questions, as in
    `encoder.train.anchor_sets`. Columns are the union, NaN where a model does not use a question.
    """
    rng = np.random.default_rng(seed)
    train_q = ts.split.train
    anchors = rng.permutation(train_q)[: min(k, len(train_q))]
    lab = ts.source.labels
    cols = set(anchors.tolist())
    own: dict[int, np.ndarray] = {}
    for m in range(ts.source.n_models):
        if np.isnan(lab[m, anchors]).all():
            obs = train_q[~np.isnan(lab[m, train_q])]
            own[m] = np.sort(rng.permutation(obs)[:k])
            cols.update(own[m].tolist())
    q = np.asarray(sorted(cols), dtype=np.int64)
    out = np.full((ts.source.n_models, len(q)), np.nan, dtype=np.float32)
    pos = {c: i for i, c in enumerate(q.tolist())}
    a_idx = np.asarray([pos[c] for c in anchors.tolist()])
    for m in range(ts.source.n_models):
        if m in own:
            idx = np.asarray([pos[c] for c in own[m].tolist()], dtype=np.int64)
            out[m, idx] = lab[m, own[m]]
        else:
            out[m, a_idx] = lab[m, anchors]
    return q, out


def score(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Routing and correctness metrics of (Q, M) predictions against (Q, M) labels (NaN = missing)."""
    return {
        "hit1": metrics.routing_hit_at_k(pred, y, 1),
        "hit3": metrics.routing_hit_at_k(pred, y, 3),
        "acc": metrics.correctness_accuracy(pred, y),
        "auc": metrics.auc(pred, y),
        "brier": metrics.brier(pred, y),
    }


def references(y: np.ndarray) -> dict[str, dict[str, float]]:
    return {"random": {"hit1": metrics.random_choice(y)}, "oracle": {"hit1": metrics.oracle(y)}}


def geometry(z: np.ndarray | None, y: np.ndarray) -> dict[str, float]:
    if z is None:
        return {}
    g = metrics.distance_disagreement(z, y)
    return {
        "pearson": g.pearson,
        "spearman": g.spearman,
        "n_pairs": float(g.n_pairs),
        "nn_agreement": metrics.nn_agreement(z, y),
    }


def run_key(paths: list[str], cfg: TrainConfig, lcfg: LocusConfig, seed: int) -> str:
    doc = {
        "data": [str(Path(p).resolve()) for p in paths],
        "train": dataclasses.asdict(cfg),
        "model": lcfg.to_dict(),
        "seed": seed,
        "split": "prepare_source(holdout_fraction=0.2)",
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def trained_model(
    tss: list[TrainSource], paths: list[str], cfg: TrainConfig, lcfg: LocusConfig, seed: int, runs: Path
) -> tuple[LocusModel, dict[str, Any]]:
    """Train one LOCUS model on all sources, or load it from the run cache."""
    out = runs / f"seed{seed}-{run_key(paths, cfg, lcfg, seed)}"
    report = out / "report.json"
    if report.is_file():
        model, fp = load_checkpoint(out / "checkpoint")
        log.info("seed %d: loaded cached model %s (%s)", seed, out, fp)
        return model, json.loads(report.read_text())
    torch.manual_seed(seed)
    model = LocusModel(lcfg)
    res = train(model, tss, cfg, seed=seed, out_dir=out, resume=True, progress=False)
    fp = save_checkpoint(model, out / "checkpoint")
    info = {
        "fingerprint": fp,
        "best_val_hit1": res.best_score,
        "best_step": res.best_step,
        "steps_run": res.steps_run,
        "train_seconds": res.seconds,
        "history": res.history,
    }
    report.write_text(json.dumps(info, indent=1))
    return model, info


def evaluate_source(
    ts: TrainSource, model: LocusModel, ks: list[int], seed: int, latent: dict[str, LatentConfig], knn_k: int
) -> dict[str, Any]:
    """All methods at every K on one source's test questions, for all and for unseen models."""
    src: EvalSource = ts.source
    lab, phi = src.labels, ts.phi
    train_q, test_q = ts.split.train, ts.split.test
    seen = np.flatnonzero(ts.train_models)
    unseen = np.flatnonzero(~ts.train_models)
    y_test = lab[:, test_q].T  # (Q_test, M)
    t0 = time.perf_counter()
    fitted: dict[str, Router] = {"locus": EmbedderRouter(LocusEmbedder(model))}
    for name, lc in latent.items():
        fitted[name] = LatentRouter(name, lc).fit(phi[train_q], lab[np.ix_(seen, train_q)], seed=seed)
    fitted["knn"] = KnnRouter(k=knn_k)
    fitted["best_single"] = MeanScoreRouter()
    fit_s = time.perf_counter() - t0
    latent_fit = {}
    for name in latent:
        router = fitted[name]
        assert isinstance(router, LatentRouter)
        best = min(router.history, key=lambda h: h["val_loss"]) if router.history else {}
        latent_fit[name] = {"best_val_loss": best.get("val_loss"), "best_step": best.get("step")}
    result: dict[str, Any] = {
        "n_models": src.n_models,
        "n_unseen": len(unseen),
        "n_questions": {"train": len(train_q), "val": len(ts.split.val), "test": len(test_q)},
        "baseline_fit_seconds": fit_s,
        "latent_fit": latent_fit,
        "unseen_models": [src.model_names[i] for i in unseen],
        "references": {"all": references(y_test), "unseen": references(y_test[:, unseen])},
        "by_k": {},
    }
    for k in ks:
        cols, anchor_lab = anchor_matrix(ts, k, seed=seed * 1000 + k)
        per: dict[str, Any] = {"k": k, "anchor_questions": len(cols)}
        for name, router in fitted.items():
            placed = router.place(phi[cols], anchor_lab)
            pred = placed.predict(phi[test_q])
            per[name] = {
                "all": score(pred, y_test),
                "unseen": score(pred[:, unseen], y_test[:, unseen]),
                "geometry": geometry(placed.vectors, y_test),
            }
        result["by_k"][str(k)] = per
        log.info(
            "%s K=%d hit1 %s",
            src.name,
            k,
            " ".join(f"{n}={per[n]['all']['hit1']:.3f}" for n in fitted),
        )
    return result


def summarise(per_seed: dict[str, Any], ks: list[int]) -> dict[str, Any]:
    """Mean and sd over seeds of every metric."""
    seeds = list(per_seed)
    sources = list(per_seed[seeds[0]]["sources"])
    out: dict[str, Any] = {}
    for s in sources:
        rows: dict[str, Any] = {"by_k": {}}
        for k in ks:
            cell: dict[str, Any] = {}
            for m in METHODS:
                cell[m] = {}
                for group in ("all", "unseen", "geometry"):
                    keys = per_seed[seeds[0]]["sources"][s]["by_k"][str(k)][m][group].keys()
                    cell[m][group] = {
                        key: mean_sd(
                            [per_seed[x]["sources"][s]["by_k"][str(k)][m][group][key] for x in seeds]
                        )
                        for key in keys
                    }
            rows["by_k"][str(k)] = cell
        rows["references"] = {
            g: {
                r: mean_sd([per_seed[x]["sources"][s]["references"][g][r]["hit1"] for x in seeds])
                for r in REFERENCES
            }
            for g in ("all", "unseen")
        }
        # Onboarding: correctness accuracy of unseen models lost when embedding from 128 instead of max K.
        if 128 in ks and max(ks) > 128:
            top = str(max(ks))
            rows["unseen_acc_drop_max_to_128"] = {
                m: mean_sd(
                    [
                        per_seed[x]["sources"][s]["by_k"][top][m]["unseen"]["acc"]
                        - per_seed[x]["sources"][s]["by_k"]["128"][m]["unseen"]["acc"]
                        for x in seeds
                    ]
                )
                for m in METHODS
            }
        out[s] = rows
    return out


def fmt(ms: dict[str, float], scale: float = 100.0) -> str:
    """Percent with one decimal (scale 100) or a raw value with three (scale 1)."""
    if ms["n"] == 0:
        return "   n/a    "
    if scale == 1.0:
        return f"{ms['mean']:.3f}±{ms['sd']:.3f}"
    return f"{ms['mean'] * scale:5.1f}±{ms['sd'] * scale:3.1f}"


def table(summary: dict[str, Any], ks: list[int]) -> str:
    lines = []
    for s, rows in summary.items():
        lines.append(f"\n== {s}: routing hit@1 (%) on test questions, all models | unseen models; mean±sd ==")
        lines.append(f"{'method':<12}" + "".join(f"{'K=' + str(k):>26}" for k in ks))
        for m in METHODS:
            cells = []
            for k in ks:
                cell = rows["by_k"][str(k)][m]
                cells.append(f"{fmt(cell['all']['hit1'])} | {fmt(cell['unseen']['hit1'])}")
            lines.append(f"{m:<12}" + "".join(f"{c:>26}" for c in cells))
        for r in REFERENCES:
            ref = rows["references"]
            lines.append(f"{r:<12}{fmt(ref['all'][r]):>14} | {fmt(ref['unseen'][r])}  (independent of K)")
        k_show = [k for k in (128, 256) if k in ks] or ks[-1:]
        for k in k_show:
            cell = rows["by_k"][str(k)]
            lines.append(f"K={k}, all models:")
            for m in METHODS:
                c = cell[m]["all"]
                lines.append(
                    f"  {m:<12} hit3 {fmt(c['hit3'])}  acc {fmt(c['acc'])}  auc {fmt(c['auc'], 1.0)}"
                    f"  brier {fmt(c['brier'], 1.0)}"
                )
        k_geo = str(256 if 256 in ks else ks[-1])
        geo = rows["by_k"][k_geo]
        lines.append(
            f"geometry at K={k_geo}: "
            + "  ".join(
                f"{m} pearson {fmt(geo[m]['geometry']['pearson'], 1.0)} nn-agree "
                f"{fmt(geo[m]['geometry']['nn_agreement'])}"
                for m in ("locus", "mf", "irt")
            )
        )
        if "unseen_acc_drop_max_to_128" in rows:
            d = rows["unseen_acc_drop_max_to_128"]
            lines.append(
                f"unseen-model correctness-accuracy drop K={ks[-1]} -> 128 (points): "
                + "  ".join(f"{m} {fmt(d[m])}" for m in METHODS)
            )
    return "\n".join(lines)


def _nan(x: Any) -> Any:
    """JSON null (how NaN is written) back to NaN."""
    if isinstance(x, dict):
        return {k: _nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan(v) for v in x]
    return math.nan if x is None else x


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="source folders (normalised or EmbedLLM layout)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument(
        "--steps",
        type=int,
        default=400,
        help="LOCUS training steps per seed (one joint model); 400 keeps 3 seeds x 4 sources near 30-40 min "
        "on 2 CPU cores at ~1 s a step",
    )
    ap.add_argument("--ks", nargs="+", type=int, default=list(DEFAULT_KS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality.json"))
    ap.add_argument("--runs", type=Path, default=Path("runs/quality"), help="cache of trained checkpoints")
    ap.add_argument("--mf-dim", type=int, default=232, help="EmbedLLM's model-vector size")
    ap.add_argument("--irt-dim", type=int, default=32)
    ap.add_argument("--knn-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--print", dest="print_only", action="store_true", help="print the table of --out and exit"
    )
    args = ap.parse_args(argv)
    if args.print_only:
        doc = json.loads(args.out.read_text(), parse_constant=float)
        print(table(_nan(doc["summary"]), doc["config"]["ks"]))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = sorted(set(args.ks))
    cfg = TrainConfig(steps=args.steps, eval_every=max(1, min(100, args.steps // 6)), patience=args.steps)
    lcfg = LocusConfig()
    latent = {"mf": LatentConfig(dim=args.mf_dim), "irt": LatentConfig(dim=args.irt_dim)}
    doc: dict[str, Any] = {
        **provenance(),
        "data": [str(Path(p).resolve()) for p in args.data],
        "config": {
            "seeds": args.seeds,
            "ks": ks,
            "train": dataclasses.asdict(cfg),
            "locus": lcfg.to_dict(),
            "latent": {k: dataclasses.asdict(v) for k, v in latent.items()},
            "knn_k": args.knn_k,
            "split": "questions 70/10/20 train/val/test stratified by category, 20% of models held out",
            "note": "K > train questions means all train questions; every method places every model "
            "from the same anchors; LOCUS is one joint model per seed over all sources",
        },
        "per_seed": {},
    }
    t_all = time.perf_counter()
    loaded = load_sources(args.data)
    for seed in args.seeds:
        tss = [prepare_source(s, phi, split_seed=seed, holdout_fraction=0.2) for s, phi in loaded]
        model, info = trained_model(tss, args.data, cfg, lcfg, seed, args.runs)
        entry: dict[str, Any] = {
            "train": {k: v for k, v in info.items() if k != "history"},
            "sources": {},
        }
        for ts in tss:
            entry["sources"][ts.source.name] = evaluate_source(ts, model, ks, seed, latent, args.knn_k)
        doc["per_seed"][str(seed)] = entry
        doc["summary"] = summarise(doc["per_seed"], ks)
        doc["seconds"] = time.perf_counter() - t_all
        write_json(args.out, doc)  # after every seed, so a cut-off run keeps what it finished
        log.info("seed %d done (%.0f s so far)", seed, doc["seconds"])
    print(table(doc["summary"], ks))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
