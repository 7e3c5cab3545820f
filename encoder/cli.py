"""`python -m encoder.cli train`: train a LOCUS checkpoint on evaluation sources and write its report.

The report (`training_report.json` next to the weights) records the data (paths, counts, content
hashes), the question splits, the training config and history, and test-question metrics per source,
so a shipped checkpoint says exactly what it was trained on and how well it does.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoder.checkpoint import save_checkpoint
from encoder.config import LocusConfig
from encoder.data import load_source
from encoder.inference import pad_sets
from encoder.metric import MetricConfig, install_metric
from encoder.metrics import best_single, correctness_accuracy, oracle, random_choice, routing_hit_at_k
from encoder.model import LocusModel
from encoder.query import QueryEncoder
from encoder.train import TrainConfig, TrainSource, anchor_sets, prepare_source, train

log = logging.getLogger("encoder.cli")

REPORT_FILE = "training_report.json"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def test_metrics(model: LocusModel, ts: TrainSource, k: int, seed: int) -> dict[str, float]:
    """Test-question metrics of one source, every model embedded from k shared train-question anchors."""
    models = np.arange(ts.source.n_models)
    q = ts.split.test
    y = ts.source.labels[:, q].T  # (Q, M) with NaN where unlabelled
    model.eval()
    with torch.inference_mode():
        z = model.encode(*pad_sets(anchor_sets(ts, k, models, seed), model.cfg.query_dim))  # (M, E)
        p = torch.sigmoid(model.predict_logits(z, torch.from_numpy(ts.phi[q]))).numpy()  # (Q, M)
    y_train = ts.source.labels[:, ts.split.train].T  # (Q_train, M): picks the best single model
    return {
        "k": float(k),
        "routing_hit1": routing_hit_at_k(p, y, k=1),
        "best_single_hit1": best_single(y_train, y),
        "oracle_hit1": oracle(y),
        "random_hit1": random_choice(y),
        "correctness_accuracy": correctness_accuracy(p, y),
    }


def run_train(
    data: Sequence[Path],
    out: Path,
    *,
    cfg: LocusConfig,
    tcfg: TrainConfig,
    seed: int,
    holdout: float,
    cache_dir: Path | None,
    resume: bool,
    state_dir: Path | None = None,
    eval_k: Sequence[int] = (32, 128, 256),
    metric: MetricConfig | None = None,
) -> dict[str, Any]:
    """Train on `data`, fit the stored-vector metric on the same training models (`metric`; None: none),
    save the best checkpoint to `out` and return the report written beside it."""
    started = time.perf_counter()
    qenc = QueryEncoder(cfg.query_model, cache_dir=cache_dir)
    if qenc.dim != cfg.query_dim:
        cfg = dataclasses.replace(cfg, query_dim=qenc.dim)
    sources: list[TrainSource] = []
    data_doc: list[dict[str, Any]] = []
    for path in data:
        src = load_source(path)
        log.info("%s: %d models x %d questions; encoding questions", src.name, src.n_models, src.n_questions)
        phi = qenc.encode(list(src.texts))
        ts = prepare_source(src, phi, split_seed=seed, holdout_fraction=holdout)
        sources.append(ts)
        data_doc.append(
            {
                "name": src.name,
                "path": str(path),
                "files": {p.name: _file_digest(p) for p in sorted(Path(path).glob("*.csv"))},
                "models": src.n_models,
                "questions": src.n_questions,
                "observed_labels": int((~np.isnan(src.labels)).sum()),
                "split_sizes": {
                    "train": len(ts.split.train),
                    "val": len(ts.split.val),
                    "test": len(ts.split.test),
                },
                "train_models": int(ts.train_models.sum()),
                "held_out_models": [src.model_names[i] for i in np.flatnonzero(~ts.train_models).tolist()],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = LocusModel(cfg)
    result = train(model, sources, tcfg, seed=seed, out_dir=state_dir, resume=resume)
    metric_doc = None if metric is None else install_metric(model, sources, metric, seed=seed)
    metrics = {ts.source.name: [test_metrics(model, ts, k, seed) for k in eval_k] for ts in sources}
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": _git_commit(),
        "seed": seed,
        "holdout_fraction": holdout,
        "split": "questions split per source train/val/test = 0.7/0.1/0.2, stratified by category, "
        "seed = --seed; test questions never seen in training or model selection",
        "data": data_doc,
        "architecture": cfg.to_dict(),
        "n_parameters": model.n_parameters(),
        "train_config": dataclasses.asdict(tcfg),
        # best_score is the highest validation hit@1 seen; the kept weights are those of best_step,
        # chosen with the log-loss tie-break, so report that step's own score too.
        "best_val_hit1": result.best_score,
        "selected_val_hit1": next(
            (h["val_hit1"] for h in result.history if h["step"] == result.best_step), None
        ),
        "best_step": result.best_step,
        "steps_run": result.steps_run,
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "history": result.history,
        "test_metrics": metrics,
        "metric": metric_doc,
    }
    fp = save_checkpoint(model, out, extra={"report": REPORT_FILE})
    report["fingerprint"] = fp
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m encoder.cli", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a checkpoint on one or more evaluation sources")
    t.add_argument(
        "--data", type=Path, nargs="+", required=True, help="source folders (normalised or EmbedLLM)"
    )
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--holdout", type=float, default=0.0, help="fraction of models never trained on")
    t.add_argument("--steps", type=int, default=TrainConfig.steps)
    t.add_argument("--batch-models", type=int, default=TrainConfig.batch_models)
    t.add_argument("--min-set", type=int, default=TrainConfig.min_set)
    t.add_argument("--max-set", type=int, default=TrainConfig.max_set)
    t.add_argument("--n-targets", type=int, default=TrainConfig.n_targets)
    t.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    t.add_argument("--patience", type=int, default=TrainConfig.patience)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--query-model", default=LocusConfig.query_model)
    t.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/locus-registry/query")
    t.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="resumable training state (default runs/train-<out name>; kept out of the checkpoint)",
    )
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from --state-dir")
    t.add_argument(
        "--metric-steps",
        type=int,
        default=MetricConfig.steps,
        help="steps fitting the stored-vector metric after training (encoder.metric); 0: none",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m encoder.cli`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tcfg = TrainConfig(
        steps=args.steps,
        batch_models=args.batch_models,
        min_set=args.min_set,
        max_set=args.max_set,
        n_targets=args.n_targets,
        eval_every=args.eval_every,
        patience=args.patience,
        threads=args.threads,
    )
    report = run_train(
        args.data,
        args.out,
        cfg=LocusConfig(query_model=args.query_model),
        tcfg=tcfg,
        seed=args.seed,
        holdout=args.holdout,
        cache_dir=args.cache_dir,
        resume=args.resume,
        state_dir=args.state_dir or Path("runs") / f"train-{args.out.name}",
        metric=MetricConfig(steps=args.metric_steps) if args.metric_steps > 0 else None,
    )
    for name, rows in report["test_metrics"].items():
        for r in rows:
            log.info(
                "%s K=%d test hit@1 %.4f (best single %.4f, oracle %.4f, random %.4f) acc %.4f",
                name,
                r["k"],
                r["routing_hit1"],
                r["best_single_hit1"],
                r["oracle_hit1"],
                r["random_hit1"],
                r["correctness_accuracy"],
            )
    log.info("wrote %s (fingerprint %s)", args.out, report["fingerprint"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
