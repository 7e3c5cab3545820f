"""The stored-vector metric: a linear map fitted after training so that Euclidean distance between the
vectors a model hands out tracks how differently two models answer.

The LOCUS loss trains the embedding for the predictor; nothing in it asks distances to mean behaviour,
and measured on models never trained on they do not (Pearson with test-question disagreement no better
than the two models' accuracy difference: `benchmarks/geometry.py`). Fitting the whole encoder to
disagreement costs routing (README, geometry loss). This fits only W (E x E, from the identity) on the
training models, with the encoder frozen:

    for each source: its training models embedded `draws` times, each time from its own random
    evaluations (log-uniform set size in [min_set, max_set], as users send them); target = their
    disagreement rate on train questions, 0 between two samples of one model;
    L = mean over sources of 1 - Pearson(||W z_a - W z_b||, target) over random subsets of rows.

The two samples of one model at target 0 make W shrink the directions along which samples of one model
scatter (what 128 random evaluations cannot pin down); the disagreement targets stretch those along
which models answer differently. The predictor reads z = W^-1 v (`LocusModel.from_vector`), so routing
and correctness do not change. Test questions never enter.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from encoder.geometry import own_samples
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.train import TrainSource, train_disagreement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricConfig:
    """How the metric is fitted. Defaults are what fitted the shipped checkpoint's."""

    draws: int = 6  # samples of every training model
    min_set: int = 64
    max_set: int = 1024
    steps: int = 600
    rows: int = 256  # rows of a source per step (pairs among them)
    lr: float = 3e-3
    # W's singular values are raised to at least this share of the largest: the fit shrinks directions
    # that only carry sample noise almost to nothing (seen: 1.5e-4 of the largest), and W^-1 would then
    # amplify the float32 rounding of stored vectors into the predictor's input (a 1e-3 floor bounds the
    # condition number at 1,000 and leaves those directions' share of any distance negligible).
    min_singular: float = 1e-3
    min_shared: int = 20  # train questions two models must share for their disagreement to count

    def __post_init__(self) -> None:
        if self.draws < 2 or self.steps < 1 or self.rows < 3:
            raise ValueError("MetricConfig needs draws >= 2, steps >= 1 and rows >= 3")
        if not 0 < self.min_singular <= 1:
            raise ValueError(f"min_singular must be in (0, 1], got {self.min_singular}")
        if not 1 <= self.min_set <= self.max_set:
            raise ValueError(f"need 1 <= min_set <= max_set, got {self.min_set}, {self.max_set}")


class NothingToFit(ValueError):
    """No source has two training models with train-question scores: there are no pairs to fit W on."""


def fit_models(ts: TrainSource) -> list[int]:
    """The source's training models that have at least one train-question score."""
    train_lab = ts.source.labels[:, ts.split.train]
    return [int(m) for m in np.flatnonzero(ts.train_models) if (~np.isnan(train_lab[m])).any()]


def metric_samples(
    model: LocusModel, ts: TrainSource, models: list[int], cfg: MetricConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """These training models of one source (`fit_models`), each embedded `cfg.draws` times from its own
    random train-question evaluations: raw embeddings z (R, E) and targets (R, R) (train-question
    disagreement, 0 for two samples of one model, NaN where unknown and on the diagonal)."""
    src = ts.source
    emb = LocusEmbedder(model)
    sets, who = [], []
    for _ in range(cfg.draws):
        n = round(math.exp(rng.uniform(math.log(cfg.min_set), math.log(cfg.max_set))))
        for m, q in zip(models, own_samples(src.labels[models], ts.split.train, n, rng), strict=True):
            sets.append((ts.phi[q], src.labels[m, q]))
            who.append(m)
    z = model.from_vector(torch.from_numpy(emb.embed(sets)))  # raw embeddings, whatever W is installed
    w = np.asarray(who)
    target = train_disagreement(src.labels, ts.split.train, cfg.min_shared)[np.ix_(w, w)]
    target[w[:, None] == w[None, :]] = 0.0
    np.fill_diagonal(target, np.nan)
    return z.detach(), torch.from_numpy(target.astype(np.float32))


def pearson_loss(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Pearson(pairwise Euclidean distance of rows of v, target) over pairs with a known target."""
    iu = torch.triu_indices(v.shape[0], v.shape[0], offset=1)
    t = target[iu[0], iu[1]]
    keep = ~torch.isnan(t)
    if int(keep.sum()) < 3:
        return v.new_zeros(())
    diff = v[iu[0][keep]] - v[iu[1][keep]]
    d = torch.sqrt((diff * diff).sum(-1) + 1e-8)
    dc, tc = d - d.mean(), t[keep] - t[keep].mean()
    return 1.0 - (dc * tc).sum() / torch.sqrt((dc * dc).sum() * (tc * tc).sum() + 1e-12)


def fit_metric(
    model: LocusModel, sources: Sequence[TrainSource], cfg: MetricConfig | None = None, *, seed: int = 0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Fit W on the training models of `sources` (the encoder frozen); returns W (E, E) and the loss at
    the first and last step. Install it with `model.set_metric(W)`. Deterministic for a seed. Sources
    with fewer than two training models add no pairs and are left out; raises NothingToFit when none is
    left."""
    cfg = cfg or MetricConfig()
    fitted_on = [(ts, models) for ts in sources if len(models := fit_models(ts)) >= 2]
    if not fitted_on:
        raise NothingToFit(
            "no source has two training models with train-question scores to fit the metric on"
        )
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.inference_mode():
        data = [metric_samples(model, ts, models, cfg, rng) for ts, models in fitted_on]
    data = [(z.clone(), t.clone()) for z, t in data]  # out of inference mode: autograd may use them
    e = model.cfg.embed_dim
    w = torch.nn.Parameter(torch.eye(e))
    first = last = float("nan")
    threads = torch.get_num_threads()
    # One intra-op thread: with several, torch's parallel sums over the pairs round differently from run
    # to run (seen: 3e-7 apart after 150 steps), and the shipped checkpoint must reproduce bit for bit.
    torch.set_num_threads(1)
    try:
        first, last = _optimise(w, data, cfg, gen)
    finally:
        torch.set_num_threads(threads)
    fitted = condition(w.detach(), cfg.min_singular)
    log.info("metric fitted: loss %.4f -> %.4f over %d steps", first, last, cfg.steps)
    return fitted, {"loss_first": first, "loss_last": last}


def install_metric(
    model: LocusModel, sources: Sequence[TrainSource], cfg: MetricConfig, *, seed: int
) -> dict[str, Any]:
    """Fit the metric and install it in `model`; the report a training run records (the config, the loss
    at the first and last step, seconds). Raises NothingToFit as `fit_metric` does."""
    started = time.perf_counter()
    w, report = fit_metric(model, sources, cfg, seed=seed)
    model.set_metric(w)
    return {"config": dataclasses.asdict(cfg), **report, "seconds": round(time.perf_counter() - started, 1)}


def condition(w: torch.Tensor, min_singular: float) -> torch.Tensor:
    """W with its singular values raised to at least `min_singular` x the largest (U diag(s) V^T)."""
    u, s, vh = torch.linalg.svd(w.double())
    s = torch.clamp(s, min=float(s[0]) * min_singular)
    out: torch.Tensor = ((u * s) @ vh).float().contiguous()
    return out


def _optimise(
    w: torch.nn.Parameter,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    cfg: MetricConfig,
    gen: torch.Generator,
) -> tuple[float, float]:
    opt = torch.optim.Adam([w], lr=cfg.lr)
    first = last = float("nan")
    for step in range(cfg.steps):
        loss = torch.zeros(())
        for z, t in data:
            idx = torch.randperm(z.shape[0], generator=gen)[: cfg.rows]
            loss = loss + pearson_loss(z[idx] @ w.T, t[idx][:, idx])
        loss = loss / len(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 0:
            first = float(loss.detach())
        last = float(loss.detach())
    return first, last
