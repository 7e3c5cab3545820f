"""Geometry benchmark: does embedding distance mean behaviour on models and domains never trained on?

Two protocols on the shared sources, every model embedded from its OWN random K train-question
evaluations (different questions per model, as users register them), figures on TEST questions
(`encoder.geometry.geometry_report` documents each column):

- heldout: one encoder trained on all sources with 20% of each source's models held out; pairs with at
  least one held-out model;
- loso: leave one source out: an encoder trained on the other sources, every pair of the left-out
  source (a domain never seen).

Each variant (a training recipe: `published` = the LOCUS loss alone, `geometry` = with the geometry
loss of `encoder.train`; `metric` = `published` plus the stored-vector metric of `encoder.metric`,
fitted on the same training models; `refit` = `metric`, but leaving a source out the metric is also
fitted on 80% of that source's models and the other 20% are measured) is trained once per protocol and
cached under --runs. Routing hit@1 (all
models of the source, own K=128 samples) and correctness accuracy (focus models) sit beside it, so
geometry never costs routing silently. MF / IRT (`--baselines`) place every model from the same own
samples; their vectors' distances are reported too. Each K's embedding, accuracy-difference and baseline
Pearson are also given over --draws own-sample draws (mean, sd, and the embedding's paired gap over the
accuracy difference): one draw is not enough to call a source above or below a baseline.

    nice -n 10 python -m benchmarks.geometry --data ../shared/data/{lart,mmlu_pro,zeroeval,alpaca_eval_v2}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import load_sources, provenance, write_json
from benchmarks.quality import trained_model
from encoder.baselines import LatentConfig, LatentRouter
from encoder.config import LocusConfig
from encoder.data import EvalSource
from encoder.evaluation import evaluate
from encoder.inference import LocusEmbedder
from encoder.metric import MetricConfig, install_metric
from encoder.model import LocusModel
from encoder.train import TrainConfig, TrainSource, prepare_source
from registry.item_response import response_distances

log = logging.getLogger("benchmarks.geometry")

VARIANTS: dict[str, dict[str, Any]] = {
    "published": {"geometry_weight": 0.0},
    "geometry": {"geometry_weight": 1.0},
}
# Variants that are another's trained encoder (its recipe and cached run) plus the stored-vector metric
# (`encoder.metric`), fitted on the same training models and sources.
WITH_METRIC = {"metric": "published", "refit": "published"}
# Variants whose metric, leaving a source out, is fitted with 80% of that source's own models too (the
# encoder still never trained on it), the other 20% in focus: what `locus-registry train --weights
# serving` does in a registry that holds a domain its encoder never saw. Held-out: the same as `metric`.
REFIT = {"refit"}
VARIANTS |= {name: VARIANTS[recipe] for name, recipe in WITH_METRIC.items()}
COLUMNS = (
    ("draws.pearson_mean", "r(draws)"),
    ("draws.acc_diff_pearson_mean", "acc(draws)"),
    ("draws.gap_mean", "gap"),
    ("draws.gap_sd", "gap-sd"),
    ("draws.mf_pearson_mean", "MF(draws)"),
    ("pearson", "r"),
    ("spearman", "rho"),
    ("acc_diff_pearson", "accdiff"),
    ("profile_pearson", "profile"),
    ("profile_cal_pearson", "prof-cal"),
    ("cluster_pearson", "cluster"),
    ("profile_cluster_pearson", "prof+clu"),
    ("response_pearson", "response"),
    ("profile_response_pearson", "prof+resp"),
    ("mf_pearson", "MF"),
    ("irt_pearson", "IRT"),
    ("ceiling", "ceil"),
    ("probe_observed_pearson", "probe-obs"),
    ("probe_combined_pearson", "probe-comb"),
    ("nn_agreement", "NN"),
    ("nn_agreement_response", "NN-resp"),
    ("nn_agreement_response_retrieved", "NN-2stage"),
    ("nn_agreement_best", "NN*"),
    ("same_tpr", "TPR"),
    ("same_tpr_response", "TPR-resp"),
    ("routing_hit1", "hit1"),
    ("best_single_hit1", "best1"),
    ("correctness_acc", "acc"),
)


def fit_latent(kinds: list[str], fit_on: list[TrainSource], seed: int) -> dict[str, LatentRouter]:
    """Fit MF / IRT on the training models' train-question evaluations of these sources (block matrix)."""
    phis, blocks = [], []
    for ts in fit_on:
        phis.append(ts.phi[ts.split.train])
        blocks.append(ts.source.labels[np.flatnonzero(ts.train_models)][:, ts.split.train])
    n_q = sum(b.shape[1] for b in blocks)
    lab = np.full((sum(b.shape[0] for b in blocks), n_q), np.nan, dtype=np.float32)
    r = c = 0
    for b in blocks:
        lab[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    phi = np.concatenate(phis)
    out = {}
    for kind in kinds:
        cfg = LatentConfig(dim=232) if kind == "mf" else LatentConfig(dim=32)
        out[kind] = LatentRouter(kind, cfg).fit(phi, lab, seed=seed)
    return out


def add_metric(name: str, model: LocusModel, fit_on: list[TrainSource], seed: int) -> dict[str, Any]:
    """For a variant in WITH_METRIC, fit the stored-vector metric on the training models of `fit_on` and
    install it in `model`; what the fit reports (nothing for other variants)."""
    if name not in WITH_METRIC:
        return {}
    return {"metric": install_metric(model, fit_on, MetricConfig(), seed=seed)}


def run_variant(
    name: str,
    overrides: dict[str, Any],
    loaded: list[tuple[EvalSource, np.ndarray]],
    paths: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    cfg = TrainConfig(
        steps=args.steps,
        eval_every=max(1, min(100, args.steps // 6)),
        patience=args.steps,
        threads=args.threads,
        **overrides,
    )
    lcfg = LocusConfig()
    trained_as = WITH_METRIC.get(name, name)  # the run cache of the recipe it trains with
    res: dict[str, Any] = {"train_config": dataclasses.asdict(cfg), "protocols": {}}
    seed = args.seed
    if "heldout" in args.protocols:
        tss = [prepare_source(s, phi, split_seed=seed, holdout_fraction=0.2) for s, phi in loaded]
        model, info = trained_model(tss, paths, cfg, lcfg, seed, args.runs / trained_as / "heldout")
        info |= add_metric(name, model, tss, seed)
        emb = LocusEmbedder(model)
        per: dict[str, Any] = {"train": {k: v for k, v in info.items() if k != "history"}, "sources": {}}
        for ts in tss:
            latent = fit_latent(args.baselines, [ts], seed) if args.baselines else {}
            focus = np.flatnonzero(~ts.train_models)
            per["sources"][ts.source.name] = evaluate(
                emb, ts, focus, args.ks, seed, latent, response=response_distances, draws=args.draws
            )
        res["protocols"]["heldout"] = per
    if "loso" in args.protocols:
        per = {"sources": {}}
        for i, (src, phi) in enumerate(loaded):
            if args.loso_sources and src.name not in args.loso_sources:
                continue
            rest = [j for j in range(len(loaded)) if j != i]
            train_on = [prepare_source(*loaded[j], split_seed=seed) for j in rest]
            model, info = trained_model(
                train_on,
                [paths[j] for j in rest],
                cfg,
                lcfg,
                seed,
                args.runs / trained_as / f"loso-{src.name}",
            )
            if name in REFIT:
                target = prepare_source(src, phi, split_seed=seed, holdout_fraction=0.2)
                info |= add_metric(name, model, [*train_on, target], seed)
                focus: np.ndarray | None = np.flatnonzero(~target.train_models)
            else:
                target = prepare_source(src, phi, split_seed=seed)
                info |= add_metric(name, model, train_on, seed)
                focus = None
            latent = fit_latent(args.baselines, train_on, seed) if args.baselines else {}
            entry = evaluate(
                LocusEmbedder(model),
                target,
                focus,
                args.ks,
                seed,
                latent,
                response=response_distances,
                draws=args.draws,
            )
            entry["train"] = {k: v for k, v in info.items() if k != "history"}
            per["sources"][src.name] = entry
        res["protocols"]["loso"] = per
    return res


def table(doc: dict[str, Any]) -> str:
    """One row per (variant, protocol, source, K)."""
    head = f"{'variant':<10} {'protocol':<8} {'source':<15} {'K':>5} " + " ".join(
        f"{c:>10}" for _, c in COLUMNS
    )
    lines = [head, "-" * len(head)]
    for vname, v in doc["variants"].items():
        for pname, p in v["protocols"].items():
            for sname, s in p["sources"].items():
                for k, row in s["by_k"].items():
                    cells = []
                    for key, _ in COLUMNS:
                        x = cell(row, key)
                        cells.append(f"{x:>10.3f}" if isinstance(x, float) and x == x else f"{'-':>10}")
                    lines.append(f"{vname:<10} {pname:<8} {sname:<15} {k:>5} " + " ".join(cells))
    lines.append("")
    lines.append(summary_lines(doc))
    return "\n".join(lines)


def cell(row: dict[str, Any], key: str) -> Any:
    """row[key], or for "a.b" row[a][b]; None when absent."""
    for part in key.split("."):
        if not isinstance(row, dict):
            return None
        row = row.get(part)  # type: ignore[assignment]
    return row


def summary_lines(doc: dict[str, Any]) -> str:
    """Means over sources at K=128 per variant and protocol: r, acc-diff, their gap, ceiling."""
    out = ["means over sources at K=128:"]
    for vname, v in doc["variants"].items():
        for pname, p in v["protocols"].items():
            rows = [s["by_k"]["128"] for s in p["sources"].values() if "128" in s["by_k"]]
            if not rows:
                continue

            def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
                xs = [x for r in rows if isinstance(x := cell(r, key), float) and x == x]
                return float(np.mean(xs)) if xs else float("nan")

            out.append(
                f"  {vname:<10} {pname:<8} r={mean('pearson'):.3f} accdiff={mean('acc_diff_pearson'):.3f} "
                f"gap={mean('pearson') - mean('acc_diff_pearson'):+.3f} ceiling={mean('ceiling'):.3f} "
                f"profile={mean('profile_pearson'):.3f} cluster={mean('cluster_pearson'):.3f} "
                f"prof+clu={mean('profile_cluster_pearson'):.3f} "
                f"response={mean('response_pearson'):.3f} prof+resp={mean('profile_response_pearson'):.3f} "
                f"probe-obs={mean('probe_observed_pearson'):.3f} "
                f"probe-comb={mean('probe_combined_pearson'):.3f} "
                f"hit1={mean('routing_hit1'):.3f} acc={mean('correctness_acc'):.3f}"
            )
            drawn = [r["draws"]["draws"] for r in rows if "draws" in r]
            if drawn:
                out.append(
                    f"  {'':<10} {'':<8} over {drawn[0]} draws: "
                    f"r={mean('draws.pearson_mean'):.3f} accdiff={mean('draws.acc_diff_pearson_mean'):.3f} "
                    f"gap={mean('draws.gap_mean'):+.3f} MF={mean('draws.mf_pearson_mean'):.3f} "
                    f"IRT={mean('draws.irt_pearson_mean'):.3f}"
                )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="source folders")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--protocols", nargs="+", default=["heldout", "loso"], choices=["heldout", "loso"])
    ap.add_argument("--loso-sources", nargs="*", default=None, help="only leave out these sources")
    ap.add_argument("--ks", nargs="+", type=int, default=[64, 128, 256, 1024])
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baselines", nargs="*", default=["mf", "irt"], choices=["mf", "irt"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--draws",
        type=int,
        default=10,
        help="own-sample draws per K for the embedding's, the accuracy difference's and the baselines' "
        "Pearson (mean, sd, paired gap); the other columns are the first draw's",
    )
    ap.add_argument("--runs", type=Path, default=Path("runs/geometry"), help="cache of trained encoders")
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="evaluate this trained encoder instead of training variants (protocol `given`: all models of "
        "each source, the checkpoint's own split seed; a checkpoint trained on these sources has seen "
        "their models, so this is not an off-distribution figure)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/geometry.json"))
    ap.add_argument("--print", dest="print_only", action="store_true", help="print the table of --out")
    args = ap.parse_args(argv)
    if args.print_only:
        print(table(json.loads(args.out.read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.ks = sorted(set(args.ks) | {128})
    started = time.perf_counter()
    loaded = load_sources(args.data)
    doc: dict[str, Any] = {
        **provenance(),
        "data": [str(Path(p).resolve()) for p in args.data],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "variants": {},
    }
    if args.checkpoint is not None:
        emb = LocusEmbedder.from_checkpoint(args.checkpoint)
        per: dict[str, Any] = {
            "checkpoint": str(args.checkpoint),
            "fingerprint": emb.fingerprint,
            "sources": {},
        }
        for src, phi in loaded:
            ts = prepare_source(src, phi, split_seed=args.seed)
            latent = fit_latent(args.baselines, [ts], args.seed) if args.baselines else {}
            per["sources"][src.name] = evaluate(
                emb, ts, None, args.ks, args.seed, latent, response=response_distances, draws=args.draws
            )
            write_json(args.out, {**doc, "variants": {"checkpoint": {"protocols": {"given": per}}}})
        doc["variants"]["checkpoint"] = {"protocols": {"given": per}}
    for name in args.variants if args.checkpoint is None else []:
        doc["variants"][name] = run_variant(name, VARIANTS[name], loaded, args.data, args)
        doc["seconds"] = time.perf_counter() - started
        write_json(args.out, doc)
    print(table(doc))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
