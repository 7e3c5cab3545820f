"""The `train` job kind: train an encoder on the registry's own evaluations and judge it against the one
in service on the same held-out questions and models.

Training data: every benchmark in the registry with enough scored models and questions
(`registry.services.training_data`), optionally mixed with score tables under LOCUS_IMPORT_ROOT.
Each table's questions are split train / val / test (stratified by category) and a share of its models
is held out of training altogether. The report compares the new encoder with the serving one on the
test questions, with the held-out models embedded from their own random K train-question
evaluations (`encoder.evaluation`, the code behind the geometry benchmark): routing hit@1,
correctness accuracy, and Pearson of embedding distance against answer disagreement. The checkpoint is
registered as a `candidate`; promoting it is a separate, deliberate step (POST /v1/encoders/{id}/promote).

A worker that dies mid-way leaves training state under LOCUS_JOB_DIR; the job's next attempt resumes
from the last saved step (every 100 steps).

With `weights: "serving"` nothing is trained: the serving encoder's weights are kept and only its
stored-vector metric (`encoder.metric`) is fitted again, on the registry's own (non-held-out) models, in
minutes. Measured on a domain no encoder trained on (README, geometry): a metric fitted on three other
domains does not carry to a fourth, while one fitted with 80% of the new domain's own models moves its
held-out models' distances from below the accuracy difference to above it. The candidate has a new
fingerprint and is promoted (and its vectors rebuilt) like any other.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from api import lifecycle
from encoder.checkpoint import save_checkpoint
from encoder.data import DataFormatError, EvalSource, load_source
from encoder.evaluation import evaluate
from encoder.inference import LocusEmbedder
from encoder.metric import MetricConfig, NothingToFit, install_metric
from encoder.model import LocusModel
from encoder.train import TrainConfig, TrainResult, TrainSource, prepare_source, train
from registry.errors import Forbidden, InvalidInput
from registry.jobs.kinds import register_kind
from registry.ports import JobHandle
from registry.services import encoders
from registry.services.context import Context
from registry.services.training_data import training_tables
from registry.settings import Settings


class TrainParams(BaseModel):
    """Parameters of a `train` job."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: list[str] | None = Field(
        default=None, description="train on these benchmarks of the registry only (default: every one)"
    )
    data: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="extra score tables to mix in: folders under LOCUS_IMPORT_ROOT in the normalised or "
        "EmbedLLM layout",
    )
    weights: Literal["train", "serving"] = Field(
        default="train",
        description="train: new encoder weights trained on the registry's evaluations; serving: keep the "
        "serving encoder's weights and fit only its stored-vector metric again, on the registry's "
        "(non-held-out) models (needs metric_steps >= 1; steps and geometry_weight do not apply)",
    )
    steps: int = Field(
        default=800, ge=1, le=100_000, description="optimisation steps (the shipped recipe: 800)"
    )
    holdout_models: float = Field(
        default=0.2, ge=0.0, lt=1.0, description="share of each table's models never trained on"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    geometry_weight: float = Field(default=0.0, ge=0.0, le=100.0, description="TrainConfig.geometry_weight")
    metric_steps: int = Field(
        default=MetricConfig.steps,
        ge=0,
        le=100_000,
        description="steps fitting the stored-vector metric on the training models after training "
        "(encoder.metric; the shipped recipe: 600); 0: none",
    )
    eval_k: int = Field(default=128, ge=8, le=4096, description="evaluations per model in the comparison")
    min_models: int = Field(default=5, ge=2, description="a benchmark needs this many scored models")
    min_questions: int = Field(default=50, ge=10, description="... and this many scored questions")


def _extra_paths(p: TrainParams, settings: Settings) -> list[Path]:
    if not p.data:
        return []
    if settings.import_root is None:
        raise Forbidden("params.data: training on server files is off: set LOCUS_IMPORT_ROOT")
    root = settings.import_root.resolve()
    out = []
    for raw in p.data:
        path = (root / raw).resolve()
        if root not in (path, *path.parents):
            raise Forbidden(f"params.data: {raw!r} is outside LOCUS_IMPORT_ROOT")
        if not path.is_dir():
            raise InvalidInput(f"params.data: {raw!r} is not a folder under LOCUS_IMPORT_ROOT")
        out.append(path)
    return out


def _sources(cur: Context, p: TrainParams, settings: Settings) -> list[TrainSource]:
    loaded: list[tuple[EvalSource, np.ndarray]] = []
    for t in training_tables(
        cur, benchmarks=p.benchmarks, min_models=p.min_models, min_questions=p.min_questions
    ):
        src = EvalSource(t.name, t.question_ids, t.texts, t.categories, t.model_names, t.labels)
        loaded.append((src, t.phi))
    for path in _extra_paths(p, settings):
        try:
            src = load_source(path)
        except DataFormatError as exc:
            raise InvalidInput(f"params.data: {exc}") from exc
        loaded.append((src, cur.embedder.encode_queries(src.texts)))
    return [
        prepare_source(src, phi, split_seed=p.seed, holdout_fraction=p.holdout_models) for src, phi in loaded
    ]


def _compare(new: LocusEmbedder, old: Any, sources: list[TrainSource], p: TrainParams) -> dict[str, Any]:
    """Both encoders on each table's test questions, held-out models in focus (all if none held out)."""
    out: dict[str, Any] = {}
    keys = ("pearson", "acc_diff_pearson", "ceiling", "routing_hit1", "best_single_hit1", "correctness_acc")
    for ts in sources:
        held = np.flatnonzero(~ts.train_models)
        focus = held if len(held) >= 2 else None
        row: dict[str, Any] = {"models": ts.source.n_models, "held_out_models": len(held)}
        for name, emb in (("trained", new), ("serving", old)):
            rep = evaluate(emb, ts, focus, [p.eval_k], p.seed, {}, routing_k=p.eval_k)["by_k"][str(p.eval_k)]
            row[name] = {k: _finite(rep.get(k)) for k in keys}
        out[ts.source.name] = row
    return out


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def train_handler(settings: Settings) -> lifecycle.Handler:
    def run_train(ctx: Context, job: JobHandle) -> dict[str, Any]:
        """Train an encoder on the registry's evaluations; register it as a candidate with its report."""
        started = time.perf_counter()
        p = TrainParams.model_validate(job.params)
        cur, cache, _ = lifecycle.serving_context(ctx)
        serving = cur.embedder
        if not isinstance(serving, LocusEmbedder):
            raise InvalidInput("the serving encoder is not a LOCUS checkpoint: nothing to train against")
        job.progress("data", 0, None)
        sources = _sources(cur, p, settings)
        job.log(
            "training on "
            + ", ".join(
                f"{ts.source.name} ({ts.source.n_models} models x {ts.source.n_questions} questions)"
                for ts in sources
            )
        )
        state_dir = Path(settings.job_dir) / f"train-{job.id}"
        resume = (state_dir / "train_state.pt").exists()
        if resume:
            job.log(f"resuming from the state saved by attempt {job.attempt - 1}")
        result: TrainResult | None = None
        if p.weights == "serving":  # the serving weights, its metric fitted again below
            model = copy.deepcopy(serving.model)
            model.set_metric(None)
        else:
            torch.manual_seed(p.seed)
            model = LocusModel(serving.model.cfg)
            tcfg = TrainConfig(steps=p.steps, geometry_weight=p.geometry_weight)
            result = train(
                model,
                sources,
                tcfg,
                seed=p.seed,
                out_dir=state_dir,
                resume=resume,
                progress=False,
                on_step=lambda step, steps: job.progress("train", step, steps),
            )
        metric_doc: dict[str, Any] | None = None
        if p.metric_steps > 0:
            job.progress("metric", 0, None)
            try:
                metric_doc = install_metric(model, sources, MetricConfig(steps=p.metric_steps), seed=p.seed)
            except NothingToFit as exc:  # a registry of one model per benchmark: vectors stay z
                if p.weights == "serving":  # nothing would differ from the serving encoder
                    raise InvalidInput(f"weights=serving: the metric cannot be fitted: {exc}") from exc
                metric_doc = {"skipped": str(exc)}
                job.log(f"stored-vector metric not fitted: {exc}")
        job.progress("compare", 0, len(sources))
        trained = LocusEmbedder(model, serving.query_encoder, threads=serving.threads)
        comparison = _compare(trained, serving, sources, p)
        report: dict[str, Any] = {
            "kind": "train-from-registry" if result is not None else "metric-from-registry",
            "job": str(job.id),
            "params": p.model_dump(mode="json"),
            "data": {
                ts.source.name: {
                    "models": ts.source.n_models,
                    "questions": ts.source.n_questions,
                    "evaluations": int((~np.isnan(ts.source.labels)).sum()),
                    "split": {k: len(getattr(ts.split, k)) for k in ("train", "val", "test")},
                    "held_out_models": [
                        ts.source.model_names[i] for i in np.flatnonzero(~ts.train_models).tolist()
                    ],
                }
                for ts in sources
            },
            "weights_from": "training" if result is not None else serving.fingerprint,
            "best_val_hit1": result.best_score if result is not None else None,
            "best_step": result.best_step if result is not None else None,
            "steps_run": result.steps_run if result is not None else 0,
            "train_seconds": round(result.seconds, 1) if result is not None else 0.0,
            "metric": metric_doc,
            "against": {
                "fingerprint": serving.fingerprint,
                "note": "the same held-out models and test questions for both encoders; the serving encoder "
                "may have been trained on some of them (the shipped checkpoint was trained on the public "
                "sources), in which case its figures are in-distribution and flatter it",
            },
            "comparison": comparison,
        }
        out_root = Path(settings.encoder_dir)
        tmp = out_root / f".tmp-{job.id}"
        if tmp.exists():
            shutil.rmtree(tmp)
        fp = save_checkpoint(model, tmp)
        final = out_root / fp
        if final.exists():
            shutil.rmtree(tmp)  # the same weights again (a deterministic rerun): keep the first copy
        else:
            tmp.rename(final)
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        entry = encoders.register_encoder(
            cur, str(final.resolve()), lifecycle.loader_for(cur, cache), report=report
        )
        shutil.rmtree(state_dir, ignore_errors=True)
        return {
            "encoder_id": str(entry.id),
            "fingerprint": entry.fingerprint,
            "path": entry.path,
            "train_seconds": report["train_seconds"],
            "total_seconds": report["total_seconds"],
            "comparison": comparison,
        }

    return run_train


def install(settings: Settings) -> None:
    register_kind(
        "train",
        train_handler(settings),
        params=TrainParams,
        scope="admin",
        description="Train an encoder on the registry's evaluations (optionally mixed with files under "
        "LOCUS_IMPORT_ROOT), or with weights=serving fit only the serving encoder's stored-vector metric "
        "on the registry's models; compare it with the serving one on held-out questions and models, and "
        "register it as a candidate. Resumes from its last saved step if its worker dies.",
        check=lambda p: _check(p, settings),
    )


def _check(p: TrainParams, settings: Settings) -> None:
    _extra_paths(p, settings)  # refuse a bad path when the job is submitted, not when it runs
    if p.weights == "serving" and p.metric_steps == 0:
        raise InvalidInput(
            "weights=serving keeps the serving encoder's weights and fits only its metric: "
            "metric_steps=0 would register the serving encoder again; give metric_steps >= 1"
        )
