"""Held-out evaluation of an encoder on one source: geometry at several K, routing and correctness.

Shared by the geometry benchmark (`benchmarks/geometry.py`) and training from the registry
(`api.training`), so a trained encoder is judged against the one in service by the same code that
produced the published figures. Every model is embedded from its own random K train-question
evaluations; figures are on test questions (`encoder.geometry` documents each).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from encoder import metrics
from encoder.baselines import LatentRouter
from encoder.data import EvalSource
from encoder.geometry import ResponseFn, draw_spread, geometry_report, own_samples
from encoder.inference import LocusEmbedder
from encoder.train import TrainSource

log = logging.getLogger(__name__)

DRAW_STRIDE = 7919  # seeds of the further own-sample draws: seed * 1000 + k + DRAW_STRIDE * d


def latent_placer(
    router: LatentRouter, labels: np.ndarray, phi: np.ndarray
) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Places every model from its own samples with a fitted MF / IRT router; returns its vectors."""

    def place(samples: list[np.ndarray]) -> np.ndarray:
        cols = np.unique(np.concatenate(samples))
        pos = np.searchsorted(cols, np.arange(labels.shape[1]))
        lab = np.full((labels.shape[0], len(cols)), np.nan, dtype=np.float32)
        for m, q in enumerate(samples):
            lab[m, pos[q]] = labels[m, q]
        placed = router.place(phi[cols], lab)
        if placed.vectors is None:
            raise ValueError(f"{router.name} places models without vectors")
        return placed.vectors  # the baseline's fitted model vectors

    return place


def routing(
    emb: LocusEmbedder, ts: TrainSource, focus: np.ndarray | None, k: int, seed: int
) -> dict[str, float]:
    """Routing hit@1 over all models of the source and correctness accuracy of the focus models, every
    model embedded from its own k random train-question evaluations, on test questions."""
    src: EvalSource = ts.source
    rng = np.random.default_rng(seed + 99)
    samples = own_samples(src.labels, ts.split.train, k, rng)
    z = emb.embed([(ts.phi[q], src.labels[m, q]) for m, q in enumerate(samples)])
    y = src.labels[:, ts.split.test].T  # (Q, M)
    p = emb.predict(z, ts.phi[ts.split.test])
    cols = np.arange(src.n_models) if focus is None else focus
    return {
        "routing_hit1": metrics.routing_hit_at_k(p, y, k=1),
        "best_single_hit1": metrics.best_single(src.labels[:, ts.split.train].T, y),
        "oracle_hit1": metrics.oracle(y),
        "correctness_acc": metrics.correctness_accuracy(p[:, cols], y[:, cols]),
    }


def evaluate(
    emb: LocusEmbedder,
    ts: TrainSource,
    focus: np.ndarray | None,
    ks: list[int],
    seed: int,
    latent: dict[str, LatentRouter],
    *,
    routing_k: int = 128,
    response: ResponseFn | None = None,
    draws: int = 1,
) -> dict[str, Any]:
    """Geometry at every K, routing and the baselines at K = `routing_k`, on one source's test questions.
    With `draws` > 1, each K's report also holds `draws`: the embedding's, the accuracy difference's and
    the baselines' Pearson over that many own-sample draws (`encoder.geometry.draw_spread`), the first
    being the draw the rest of the report made."""
    src = ts.source
    extra = {name: latent_placer(r, src.labels, ts.phi) for name, r in latent.items()}
    out: dict[str, Any] = {
        "models": src.n_models,
        "focus_models": src.n_models if focus is None else len(focus),
        "by_k": {},
    }
    data = (emb.embed, src.labels, ts.phi, ts.split.train, ts.split.test)
    groups = np.unique(np.asarray(src.categories), return_inverse=True)[1]
    for k in ks:
        common: dict[str, Any] = {"k": k, "focus": focus, "extra_vectors": extra if k == routing_k else None}
        rep = geometry_report(
            *data, seed=seed * 1000 + k, predict=emb.predict, groups=groups, response=response, **common
        )
        if draws > 1:
            seeds = [seed * 1000 + k + DRAW_STRIDE * d for d in range(draws)]
            rep["draws"] = draw_spread(*data, seeds=seeds, **common)
        if k == routing_k:
            rep.update(routing(emb, ts, focus, k, seed))
        out["by_k"][str(k)] = rep
        log.info(
            "%s K=%d r=%.3f accdiff=%.3f ceil=%.3f tpr=%.2f",
            src.name,
            k,
            rep["pearson"],
            rep["acc_diff_pearson"],
            rep["ceiling"],
            rep["same_tpr"],
        )
    return out
