"""Training of the LOCUS encoder + predictor on one or several evaluation sources.

Each step draws a batch of models (source chosen uniformly, then a training model of that source),
gives each a random subset of its train-question evaluations as the encoder set (one set size per
step, log-uniform in [min_set, max_set], so one checkpoint works from tens to thousands of
evaluations) and asks the predictor to score other train questions of the same model. Early stopping
on validation routing accuracy (hit@1), averaged over sources.

Geometry (`geometry_weight > 0`): the predictor alone lets the encoder keep little more than a model's
overall accuracy, so embedding distance barely tracks *which* questions a model gets right. With the
geometry loss, each batch is drawn in groups of `group_size` models of one source, `twins` of them
encoded twice from disjoint random subsets of their evaluations, and the pairwise embedding distances
are fitted (up to one scale shared by all sources, so distances of different domains compare) to the
models' answer-disagreement rates on train questions, 0 for the two samples of one model:
    L_geo = 1 - (sum d t)^2 / (sum d^2 * sum t^2)   over pairs within a group,
which is scale-free, pulls independent samples of one model together (sample consistency) and
spreads models by how differently they answer. Test questions never enter the targets.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from encoder.data import EvalSource, QuestionSplit, holdout_models, split_questions
from encoder.inference import pad_sets
from encoder.metrics import disagreement_matrix, routing_hit_at_k
from encoder.model import LocusModel

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule. Defaults are what trained the shipped checkpoint (`make checkpoint`)."""

    steps: int = 800
    batch_models: int = 32
    min_set: int = 32
    max_set: int = 1024
    n_targets: int = 256
    lr_encoder: float = 1e-3
    lr_predictor: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    noise_start: float = 0.10
    noise_end: float = 0.05
    eval_every: int = 100
    patience: int = 400
    val_k: int = 256
    save_every: int = 100
    select_tolerance: float = 0.01
    threads: int | None = None
    geometry_weight: float = 0.0
    group_size: int = 8
    twins: int = 2
    min_shared: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.min_set <= self.max_set:
            raise ValueError(f"need 1 <= min_set <= max_set, got {self.min_set}, {self.max_set}")
        if self.steps < 1 or self.batch_models < 1 or self.n_targets < 1 or self.eval_every < 1:
            raise ValueError("steps, batch_models, n_targets and eval_every must be positive")
        if self.geometry_weight < 0:
            raise ValueError(f"geometry_weight must be >= 0, got {self.geometry_weight}")
        if self.geometry_weight > 0 and not (0 <= self.twins < self.group_size <= self.batch_models):
            raise ValueError(
                f"need 0 <= twins < group_size <= batch_models, got {self.twins}, {self.group_size}, "
                f"{self.batch_models}"
            )


@dataclass
class TrainSource:
    """One source prepared for training: query encodings, question split, training models."""

    source: EvalSource
    phi: np.ndarray  # (Q, d) float32
    split: QuestionSplit
    train_models: np.ndarray  # (M,) bool: models training may use

    def __post_init__(self) -> None:
        if self.phi.shape[0] != self.source.n_questions:
            raise ValueError(
                f"{self.source.name}: {self.phi.shape[0]} query encodings "
                f"for {self.source.n_questions} questions"
            )


@dataclass
class TrainResult:
    best_score: float
    best_step: int
    steps_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def prepare_source(
    source: EvalSource,
    phi: np.ndarray,
    *,
    split_seed: int = 0,
    holdout_fraction: float = 0.0,
    val: float = 0.1,
    test: float = 0.2,
) -> TrainSource:
    """Split questions (stratified by category) and hold out a fraction of models from training."""
    split = split_questions(source, val=val, test=test, seed=split_seed)
    held = (
        holdout_models(source, fraction=holdout_fraction, seed=split_seed) if holdout_fraction > 0 else None
    )
    train_models = ~held if held is not None else np.ones(source.n_models, dtype=bool)
    return TrainSource(
        source=source, phi=np.asarray(phi, dtype=np.float32), split=split, train_models=train_models
    )


def anchor_sets(
    ts: TrainSource, k: int, models: np.ndarray, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encoder sets from a shared random anchor set of k train questions (each model uses those it has)."""
    rng = np.random.default_rng(seed)
    anchors = rng.permutation(ts.split.train)[: min(k, len(ts.split.train))]
    sets = []
    for m in models:
        y = ts.source.labels[m, anchors]
        keep = ~np.isnan(y)
        if not keep.any():  # a model with no anchor label falls back to any of its train questions
            obs = ts.split.train[~np.isnan(ts.source.labels[m, ts.split.train])]
            sel = np.sort(rng.permutation(obs)[:k])
            sets.append((ts.phi[sel], ts.source.labels[m, sel]))
            continue
        sets.append((ts.phi[anchors[keep]], y[keep]))
    return sets


def routing_hit1(p: np.ndarray, y: np.ndarray) -> float:
    """Routing hit@1 over queries: p, y (Q, M), NaN in y where unlabelled (such models can't be picked)."""
    return routing_hit_at_k(p, y, k=1)


def _embed(model: LocusModel, sets: Sequence[tuple[np.ndarray, np.ndarray]], d: int) -> torch.Tensor:
    return model.encode(*pad_sets(sets, d))


def improves(score: float, loss: float, best_score: float, best_loss: float, tolerance: float) -> bool:
    """Model selection: a clear routing gain wins; within `tolerance` of the best, lower log-loss wins."""
    return score > best_score + tolerance or (score >= best_score - tolerance and loss < best_loss)


def evaluate_split(
    model: LocusModel, sources: Sequence[TrainSource], *, k: int, split: str = "val", seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per source: routing hit@1 and log-loss over the training models, embedded from k anchors."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for ts in sources:
            q = getattr(ts.split, split)
            models = np.flatnonzero(ts.train_models)
            if len(q) == 0 or len(models) == 0:
                continue
            z = _embed(model, anchor_sets(ts, k, models, seed), model.cfg.query_dim)
            logits = model.predict_logits(z, torch.from_numpy(ts.phi[q]))  # (Q, M)
            y = ts.source.labels[models][:, q].T  # (Q, M), NaN where unlabelled
            obs = torch.from_numpy(~np.isnan(y))
            loss = F.binary_cross_entropy_with_logits(logits[obs], torch.from_numpy(np.nan_to_num(y))[obs])
            out[ts.source.name] = {
                "hit1": routing_hit1(torch.sigmoid(logits).numpy(), y),
                "loss": loss.item(),
            }
    model.train(was_training)
    return out


def evaluate_routing(
    model: LocusModel, sources: Sequence[TrainSource], *, k: int, split: str = "val", seed: int = 0
) -> dict[str, float]:
    """Routing hit@1 per source over the training models, embedded from k anchors, on `split` questions."""
    return {
        name: m["hit1"] for name, m in evaluate_split(model, sources, k=k, split=split, seed=seed).items()
    }


class _Sampler:
    """Draws training batches; all randomness comes from the seeded numpy Generator passed in."""

    def __init__(self, sources: Sequence[TrainSource], cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.labels = [ts.source.labels for ts in sources]
        self.phi = [torch.from_numpy(ts.phi) for ts in sources]
        # Per source: training models with at least one train-question score, and those questions.
        self.models: list[np.ndarray] = []
        self.pools: list[list[np.ndarray]] = []
        for ts in sources:
            train_lab = ts.source.labels[:, ts.split.train]
            ms = [m for m in np.flatnonzero(ts.train_models) if (~np.isnan(train_lab[m])).any()]
            self.models.append(np.asarray(ms, dtype=np.int64))
            self.pools.append([ts.split.train[~np.isnan(train_lab[m])] for m in ms])
        self.disagreement = (
            [train_disagreement(ts.source.labels, ts.split.train, cfg.min_shared) for ts in sources]
            if cfg.geometry_weight > 0
            else []
        )
        self.active = [i for i, m in enumerate(self.models) if len(m)]
        if not self.active:
            raise ValueError("no training model has any train-question evaluation")

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """One batch: encoder sets phi (B, N, d), y (B, N), mask (B, N); targets tphi (B, T, d), ty (B, T);
        geometry targets (B, B): train-question disagreement of the two rows' models, 0 for two samples
        of one model, NaN where unknown (two sources, too few shared questions, the diagonal)."""
        cfg = self.cfg
        n = round(math.exp(rng.uniform(math.log(cfg.min_set), math.log(cfg.max_set))))
        b, t = cfg.batch_models, cfg.n_targets
        # (source, model, encoder questions, target questions, group)
        picks: list[tuple[int, int, np.ndarray, np.ndarray, int]] = []
        if cfg.geometry_weight > 0:
            for g in range(b // cfg.group_size):
                s = int(rng.choice(self.active))
                size = min(cfg.group_size - cfg.twins, len(self.models[s]))
                js = rng.choice(len(self.models[s]), size=size, replace=False)
                twin_js = set(rng.choice(js, size=min(cfg.twins, size), replace=False).tolist())
                for j in js:
                    picks.append(self._pick(rng, s, int(j), n, t, g))
                    if j in twin_js:  # a second, disjoint sample of the same model
                        picks.append(self._pick(rng, s, int(j), n, t, g, exclude=picks[-1][2]))
        # The rest (all of it without geometry): source uniform, then a model. One vectorised draw of
        # sources, as the shipped checkpoint was trained, so its training reproduces bit for bit.
        for s in rng.choice(self.active, size=b - len(picks)) if len(picks) < b else []:
            j = int(rng.integers(len(self.models[s])))
            picks.append(self._pick(rng, int(s), j, n, t, -1 - len(picks)))
        width = max(len(p[2]) for p in picks)
        d = self.phi[0].shape[1]
        phi = torch.zeros(b, width, d)
        y = torch.zeros(b, width)
        mask = torch.zeros(b, width, dtype=torch.bool)
        tphi = torch.empty(b, t, d)
        ty = torch.empty(b, t)
        geo = torch.full((b, b), float("nan"))
        for i, (s, m, enc, tgt, _) in enumerate(picks):
            k = len(enc)
            phi[i, :k] = self.phi[s][enc]
            y[i, :k] = torch.from_numpy(self.labels[s][m, enc])
            mask[i, :k] = True
            tphi[i] = self.phi[s][tgt]
            ty[i] = torch.from_numpy(self.labels[s][m, tgt])
        if cfg.geometry_weight > 0:
            for i, (s, m, _, _, g) in enumerate(picks):
                for j, (s2, m2, _, _, g2) in enumerate(picks):
                    if i != j and g == g2 and s == s2:
                        geo[i, j] = 0.0 if m == m2 else float(self.disagreement[s][m, m2])
        return phi, y, mask, tphi, ty, geo

    def _pick(
        self,
        rng: np.random.Generator,
        s: int,
        j: int,
        n: int,
        t: int,
        group: int,
        exclude: np.ndarray | None = None,
    ) -> tuple[int, int, np.ndarray, np.ndarray, int]:
        pool = self.pools[s][j]
        if exclude is not None:  # a twin: questions disjoint from its first sample when there are any
            rest_pool = np.setdiff1d(pool, exclude)
            pool = rest_pool if len(rest_pool) else pool
        perm = rng.permutation(pool)
        n_enc = min(n, max(1, len(pool) - t // 2))  # small pools keep some questions back as targets
        enc, rest = perm[:n_enc], perm[n_enc:]
        if len(rest) < t:  # too few held-back questions: top up from the set itself
            rest = np.concatenate([rest, rng.choice(enc, size=t - len(rest))])
        return s, int(self.models[s][j]), enc, rest[:t], group


def train_disagreement(labels: np.ndarray, train_q: np.ndarray, min_shared: int) -> np.ndarray:
    """(M, M) answer-disagreement rate of every model pair on train questions both answered; NaN when
    they share fewer than `min_shared`. Scores are read as correct at >= 0.5."""
    rate, shared = disagreement_matrix(labels[:, train_q].T)
    return np.where(shared >= min_shared, rate, np.nan)


def geometry_loss(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-free fit of pairwise distances to targets: 1 - cos^2 between the distance and target
    vectors over the pairs where target is known (see the module doc). z (B, E), target (B, B)."""
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    t = target[iu[0], iu[1]]  # (P,)
    keep = ~torch.isnan(t)
    if int(keep.sum()) < 2:
        return z.new_zeros(())
    diff = z[iu[0][keep]] - z[iu[1][keep]]  # (P', E)
    d = torch.sqrt((diff * diff).sum(-1) + 1e-8)  # (P',)
    t = t[keep]
    return 1.0 - (d * t).sum() ** 2 / ((d * d).sum() * (t * t).sum() + 1e-12)


def train(
    model: LocusModel,
    sources: Sequence[TrainSource],
    cfg: TrainConfig,
    *,
    seed: int,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train `model` in place; the best validation weights are loaded back at the end.

    `stop_after` ends this invocation at that step (state saved when `out_dir` is given), so a long
    run can be split into pieces and continued with `resume=True`. `on_step(step, steps)` is called
    after every step (a background job reports progress there, and stops the run by raising).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sampler = _Sampler(sources, cfg)
    enc_params = list(model.encoder.parameters())
    pred_params = list(model.predictor.parameters())
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": cfg.lr_encoder}, {"params": pred_params, "lr": cfg.lr_predictor}],
        weight_decay=cfg.weight_decay,
    )
    base_lrs = [cfg.lr_encoder, cfg.lr_predictor]
    step = 0
    best_score, best_loss, best_step, bad = -1.0, math.inf, 0, 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    history: list[dict[str, float]] = []
    elapsed = 0.0
    state_path = out_dir / STATE_FILE if out_dir is not None else None
    if resume and state_path is not None and state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        if st["train_config"] != dataclasses.asdict(cfg) or st["seed"] != seed:
            raise ValueError(f"{state_path}: saved run used another config or seed; cannot resume")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        rng.bit_generator.state = st["numpy_rng"]
        torch.set_rng_state(st["torch_rng"])
        step, best_score, best_step, bad = st["step"], st["best_score"], st["best_step"], st["bad"]
        best_loss = st["best_loss"]
        best_state, history, elapsed = st["best_state"], st["history"], st["elapsed"]
        log.info("resumed from %s at step %d (best %.4f at %d)", state_path, step, best_score, best_step)

    model.train()
    started = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train", unit="step")
    running = float("nan")
    last = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    while step < last and bad < cfg.patience:
        frac = min(1.0, step / max(1, cfg.steps))
        noise = cfg.noise_end + 0.5 * (cfg.noise_start - cfg.noise_end) * (1 + math.cos(math.pi * frac))
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * frac))
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            group["lr"] = base * warm * (0.1 + 0.9 * decay)
        phi, y, mask, tphi, ty, geo = sampler.sample(rng)
        phi = phi + noise * torch.randn_like(phi) * mask.unsqueeze(-1)  # (B, N, d)
        tphi = tphi + noise * torch.randn_like(tphi)  # (B, T, d)
        z = model.encode(phi, y, mask)  # (B, E)
        logits = model.predictor.pair_logits(z.unsqueeze(1).expand(-1, tphi.shape[1], -1), tphi)  # (B, T)
        loss = F.binary_cross_entropy_with_logits(logits, ty)
        if cfg.geometry_weight > 0:
            loss = loss + cfg.geometry_weight * geometry_loss(z, geo)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        running = loss.item() if math.isnan(running) else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        if on_step is not None:
            on_step(step, cfg.steps)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val = evaluate_split(model, sources, k=cfg.val_k, split="val", seed=seed)
            score = float(np.mean([m["hit1"] for m in val.values()])) if val else -running
            val_loss = float(np.mean([m["loss"] for m in val.values()])) if val else running
            history.append(
                {
                    "step": step,
                    "loss": running,
                    "val_hit1": score,
                    "val_loss": val_loss,
                    **{f"val_{name}": m["hit1"] for name, m in val.items()},
                }
            )
            # Validation sets are small, so hit@1 moves by a question or two between evaluations:
            # a clear gain wins; within `select_tolerance` of the best, the lower validation log-loss wins.
            if improves(score, val_loss, best_score, best_loss, cfg.select_tolerance):
                best_score, best_loss, best_step, bad = max(score, best_score), val_loss, step, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += cfg.eval_every
            bar.set_postfix(loss=f"{running:.4f}", val=f"{score:.4f}", best=f"{best_score:.4f}@{best_step}")
            log.info(
                "step %d loss %.4f val_hit1 %.4f val_loss %.4f %s",
                step,
                running,
                score,
                val_loss,
                json.dumps(val),
            )
        if state_path is not None and (step % cfg.save_every == 0 or step in (cfg.steps, last)):
            _save_state(
                state_path,
                model,
                opt,
                rng,
                cfg,
                seed,
                step,
                (best_score, best_loss),
                best_step,
                bad,
                best_state,
                history,
                time.perf_counter() - started,
            )
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_score, best_step, step, time.perf_counter() - started, history)


def _save_state(
    path: Path,
    model: LocusModel,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    cfg: TrainConfig,
    seed: int,
    step: int,
    best: tuple[float, float],
    best_step: int,
    bad: int,
    best_state: dict[str, torch.Tensor],
    history: list[dict[str, float]],
    elapsed: float,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "train_config": dataclasses.asdict(cfg),
        "seed": seed,
        "step": step,
        "best_score": best[0],
        "best_loss": best[1],
        "best_step": best_step,
        "bad": bad,
        "best_state": best_state,
        "history": history,
        "elapsed": elapsed,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(doc, tmp)
    tmp.replace(path)
