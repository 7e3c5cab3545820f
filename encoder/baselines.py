"""Baseline routers to compare LOCUS against, all behind one fit / place / predict protocol.

Protocol (one `Router` interface, so a benchmark compares every method at the same K):
1. `fit(phi, labels)`: train the shared parts on the training models' evaluations.
2. `place(phi, labels)`: place any models (seen in training or not) from their evaluations only.
3. `Placement.predict(phi)`: (Q, M) P(correct) for new queries.

Evaluation data is passed as a question-encoding matrix `phi` (Q, d) and a label matrix `labels`
(M, Q) in [0, 1] with NaN where a model has no score, i.e. the layout of `EvalSource.labels`.

Methods: EmbedLLM-style matrix factorisation (a free vector per model, fitted by gradient), IRT-style
(theta_m . a(phi) - b(phi)), a k-NN router over query encodings, the per-model mean score (whose
routing is "best single model") and `EmbedderRouter`, which puts a set embedder such as LOCUS behind
the same interface. Random and oracle routing are label statistics, found in `encoder.metrics`.

Placing a new model into MF / IRT is a convex problem once the shared parts are frozen (logistic
regression in the model's vector), solved with L-BFGS to a MAP estimate under a Gaussian prior fitted
to the training models' vectors: with K = 32 evaluations the prior dominates and the model lands
near the population mean, with thousands it follows the data. No early stopping is needed there.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoder.metrics import model_mean_scores


def check_evaluations(phi: np.ndarray, labels: np.ndarray, *, need_each: bool) -> None:
    """Raise ValueError naming the offending item if phi (Q, d) / labels (M, Q) are malformed."""
    if phi.ndim != 2:
        raise ValueError(f"phi must be a (Q, d) matrix, got shape {phi.shape}")
    if labels.ndim != 2 or labels.shape[1] != phi.shape[0]:
        raise ValueError(f"labels must be (M, {phi.shape[0]}) to match phi {phi.shape}, got {labels.shape}")
    if not np.isfinite(phi).all():
        raise ValueError("phi contains NaN or infinite values")
    obs = ~np.isnan(labels)
    bad = obs & ((labels < 0.0) | (labels > 1.0))
    if bad.any():
        m, q = np.argwhere(bad)[0]
        raise ValueError(f"label of model row {m}, question column {q} is {labels[m, q]}, outside [0, 1]")
    if need_each:
        empty = np.flatnonzero(~obs.any(axis=1))
        if len(empty):
            raise ValueError(f"model row(s) {empty[:10].tolist()} have no evaluations to place them from")
    elif not obs.any():
        raise ValueError("labels contain no evaluations")


class Placement(abc.ABC):
    """Models placed by a router: predicts (Q, M) probabilities; `vectors` are per-model vectors or None."""

    vectors: np.ndarray | None = None

    @abc.abstractmethod
    def predict(self, phi: np.ndarray) -> np.ndarray:
        """P(correct) for every (query, model): phi (Q, d) -> (Q, M) float32."""


class Router(abc.ABC):
    """A method that places models from evaluations and predicts their correctness on new queries."""

    name: str = "router"

    def fit(self, phi: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Router:
        """Train shared parts on training models' evaluations (nothing to train by default)."""
        check_evaluations(phi, labels, need_each=False)
        return self

    @abc.abstractmethod
    def place(self, phi: np.ndarray, labels: np.ndarray) -> Placement:
        """Place every row of labels (M, Q) from its evaluations on the questions phi (Q, d)."""


# ---------------------------------------------------------------- per-model mean ("best single")


class _MeanPlacement(Placement):
    def __init__(self, means: np.ndarray) -> None:
        self.means = means.astype(np.float32)
        self.vectors = None

    def predict(self, phi: np.ndarray) -> np.ndarray:
        return np.tile(self.means, (phi.shape[0], 1))


class MeanScoreRouter(Router):
    """Predicts each model's mean score everywhere; its routing is the best single model."""

    name = "best_single"

    def place(self, phi: np.ndarray, labels: np.ndarray) -> Placement:
        check_evaluations(phi, labels, need_each=True)
        return _MeanPlacement(model_mean_scores(labels.T))


# ---------------------------------------------------------------- k-NN over query encodings


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


class _KnnPlacement(Placement):
    def __init__(self, phi: np.ndarray, labels: np.ndarray, k: int, chunk: int) -> None:
        self.phi = _unit(phi)  # (K, d)
        self.labels = labels.astype(np.float32)  # (M, K)
        self.k = k
        self.chunk = chunk
        self.vectors = None
        # Models with the same observed questions share one neighbour search.
        obs = ~np.isnan(labels)
        patterns, group = np.unique(obs, axis=0, return_inverse=True)
        self.group = np.asarray(group).reshape(-1)  # numpy 2.0.0 returned it with an extra axis
        self.patterns: list[np.ndarray] = [np.flatnonzero(p) for p in patterns]

    def predict(self, phi: np.ndarray) -> np.ndarray:
        q = _unit(phi)
        out = np.empty((len(q), self.labels.shape[0]), dtype=np.float32)
        for g, cols in enumerate(self.patterns):
            models = np.flatnonzero(self.group == g)
            k = min(self.k, len(cols))
            lab = self.labels[np.ix_(models, cols)]  # (G, n)
            for start in range(0, len(q), self.chunk):
                sim = q[start : start + self.chunk] @ self.phi[cols].T  # (C, n)
                top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < len(cols) else None
                if top is None:
                    out[start : start + self.chunk, models] = lab.mean(axis=1)
                else:
                    out[start : start + self.chunk, models] = lab[:, top].mean(axis=2).T  # (C, G)
        return out


class KnnRouter(Router):
    """Scores a model on a query by its mean score on the k most cosine-similar of its evaluated questions."""

    name = "knn"

    def __init__(self, k: int = 10, *, chunk: int = 512) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.chunk = chunk
        self.name = f"knn{k}"

    def place(self, phi: np.ndarray, labels: np.ndarray) -> Placement:
        check_evaluations(phi, labels, need_each=True)
        return _KnnPlacement(phi, labels, self.k, self.chunk)


# ---------------------------------------------------------------- latent-factor routers (MF, IRT)


@dataclass(frozen=True)
class LatentConfig:
    """Optimisation of a latent-factor router: shared fit (AdamW, early stopping) and MAP placement."""

    dim: int = 232
    hidden: int = 128
    steps: int = 400
    batch_questions: int = 2048
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    eval_every: int = 20
    patience: int = 100
    prior_scale: float = 1.0
    place_iters: int = 100

    def __post_init__(self) -> None:
        if self.dim < 1 or self.hidden < 1 or self.steps < 1 or self.batch_questions < 1:
            raise ValueError("dim, hidden, steps and batch_questions must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.prior_scale <= 0:
            raise ValueError(f"prior_scale must be positive, got {self.prior_scale}")


class _Latent(nn.Module, abc.ABC):
    """Shared query network + per-model vectors; logits are linear in a model's vector."""

    def __init__(self, n_models: int, dim: int) -> None:
        super().__init__()
        self.models = nn.Parameter(torch.randn(n_models, dim) * 0.1)

    @abc.abstractmethod
    def features(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        """phi (Q, d) -> per-query weights w (Q, dim) and offsets c (Q,): logit(q, m) = w_q . v_m + c_q."""

    def logits(self, phi: Tensor, vectors: Tensor) -> Tensor:
        w, c = self.features(phi)
        return w @ vectors.T + c.unsqueeze(1)  # (Q, M)


class _MF(_Latent):
    """EmbedLLM: logits = Linear(d -> 2)(P_m * q(phi)); 2-class CE equals BCE on the logit difference."""

    def __init__(self, n_models: int, d_phi: int, cfg: LatentConfig) -> None:
        super().__init__(n_models, cfg.dim)
        self.query = nn.Linear(d_phi, cfg.dim)
        self.head = nn.Linear(cfg.dim, 2)

    def features(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        q = self.query(phi)  # (Q, dim)
        w = q * (self.head.weight[1] - self.head.weight[0])  # (Q, dim)
        c = (self.head.bias[1] - self.head.bias[0]).expand(phi.shape[0])  # (Q,)
        return w, c


class _IRT(_Latent):
    """IRT-Net style: logit = theta_m . a(phi) - b(phi), a and b from one small MLP."""

    def __init__(self, n_models: int, d_phi: int, cfg: LatentConfig) -> None:
        super().__init__(n_models, cfg.dim)
        self.net = nn.Sequential(nn.Linear(d_phi, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim + 1))

    def features(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(phi)  # (Q, dim + 1)
        return out[:, :-1], -out[:, -1]


class _LatentPlacement(Placement):
    def __init__(self, net: _Latent, vectors: Tensor) -> None:
        self.net = net
        self.vectors = vectors.detach().numpy().astype(np.float32)
        self._v = vectors.detach()

    def predict(self, phi: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(phi, dtype=np.float32))
            return torch.sigmoid(self.net.logits(x, self._v)).numpy().astype(np.float32)


class LatentRouter(Router):
    """Shared query network + a free vector per model; a new model's vector is fitted on its evaluations."""

    def __init__(self, kind: str, cfg: LatentConfig | None = None) -> None:
        if kind not in ("mf", "irt"):
            raise ValueError(f"unknown latent router kind {kind!r} (expected 'mf' or 'irt')")
        self.kind = kind
        self.name = kind
        self.cfg = cfg or (LatentConfig() if kind == "mf" else LatentConfig(dim=32))
        self.net: _Latent | None = None
        self.prior_mean: Tensor | None = None
        self.prior_prec: Tensor | None = None
        self.history: list[dict[str, float]] = []

    def fit(self, phi: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> LatentRouter:
        """Train the query network and training models' vectors (AdamW, early stop on held-out pairs)."""
        check_evaluations(phi, labels, need_each=False)
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        x = torch.from_numpy(np.asarray(phi, dtype=np.float32))  # (Q, d)
        y = torch.from_numpy(np.nan_to_num(labels.T, nan=0.0).astype(np.float32))  # (Q, M)
        obs = ~np.isnan(labels.T)  # (Q, M)
        val = obs & (rng.random(obs.shape) < cfg.val_fraction)
        train_mask = torch.from_numpy((obs & ~val).astype(np.float32))
        val_mask = torch.from_numpy(val.astype(np.float32))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            cls = _MF if self.kind == "mf" else _IRT
            net = cls(labels.shape[0], phi.shape[1], cfg)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_q = x.shape[0]
        best, best_state, bad = float("inf"), None, 0
        self.history = []
        order = rng.permutation(n_q)
        pos = 0
        for step in range(1, cfg.steps + 1):
            if pos >= n_q:
                order, pos = rng.permutation(n_q), 0
            idx = torch.from_numpy(order[pos : pos + cfg.batch_questions])
            pos += cfg.batch_questions
            m = train_mask[idx]  # (B, M)
            logits = net.logits(x[idx], net.models)  # (B, M)
            loss = (
                F.binary_cross_entropy_with_logits(logits, y[idx], reduction="none") * m
            ).sum() / m.sum().clamp(min=1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if val.any() and (step % cfg.eval_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    vl = F.binary_cross_entropy_with_logits(net.logits(x, net.models), y, reduction="none")
                    score = float((vl * val_mask).sum() / val_mask.sum())
                self.history.append({"step": float(step), "val_loss": score})
                if score < best - 1e-5:
                    best, bad = score, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += cfg.eval_every
                    if bad >= cfg.patience:
                        break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        # Models without any training evaluation keep their random init: leave them out of the prior.
        v = net.models.detach()[torch.from_numpy(obs.any(axis=0))]
        if v.shape[0] == 0:
            raise ValueError("labels contain no evaluations")
        self.prior_mean = v.mean(dim=0)
        # Per-dimension Gaussian prior from the training models' vectors (floored so it never collapses).
        var = v.var(dim=0, unbiased=True) if v.shape[0] > 1 else torch.ones_like(self.prior_mean)
        self.prior_prec = 1.0 / (cfg.prior_scale * var.clamp(min=1e-4))
        self.net = net
        return self

    def place(self, phi: np.ndarray, labels: np.ndarray) -> Placement:
        """MAP vectors for every row of labels, with the shared network frozen (convex; L-BFGS)."""
        if self.net is None or self.prior_mean is None or self.prior_prec is None:
            raise RuntimeError(f"{self.name}: call fit() before place()")
        check_evaluations(phi, labels, need_each=True)
        net, mean, prec = self.net, self.prior_mean, self.prior_prec
        with torch.no_grad():
            w, c = net.features(torch.from_numpy(np.asarray(phi, dtype=np.float32)))  # (Q, dim), (Q,)
        y = torch.from_numpy(np.nan_to_num(labels.T, nan=0.0).astype(np.float32))  # (Q, M)
        mask = torch.from_numpy((~np.isnan(labels.T)).astype(np.float32))
        v = mean.repeat(labels.shape[0], 1).clone().requires_grad_(True)  # (M, dim)
        opt = torch.optim.LBFGS([v], lr=1.0, max_iter=self.cfg.place_iters, line_search_fn="strong_wolfe")
        total = mask.sum()

        def closure() -> Tensor:
            opt.zero_grad()
            logits = w @ v.T + c.unsqueeze(1)  # (Q, M)
            nll = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum()
            # each model's objective is separable: sum_i BCE + 1/2 (v - mean)' diag(prec) (v - mean)
            loss = (nll + 0.5 * (((v - mean) ** 2) * prec).sum()) / total
            loss.backward()
            return loss

        opt.step(closure)
        return _LatentPlacement(net, v.detach())


def matrix_factorisation(cfg: LatentConfig | None = None) -> LatentRouter:
    """EmbedLLM-style matrix factorisation router (d = 232)."""
    return LatentRouter("mf", cfg)


def irt(cfg: LatentConfig | None = None) -> LatentRouter:
    """IRT-style router: sigmoid(theta_m . a(phi) - b(phi))."""
    return LatentRouter("irt", cfg)


# ---------------------------------------------------------------- a set embedder (LOCUS) as a router


class SetEmbedder(Protocol):
    """What `EmbedderRouter` needs: `encoder.inference.LocusEmbedder` satisfies it."""

    def embed(self, sets: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray: ...

    def predict(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray: ...


def to_sets(phi: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (phi (n, d), scores (n,)) set per row of labels (M, Q), from its observed entries."""
    out = []
    for row in labels:
        keep = ~np.isnan(row)
        out.append((phi[keep], row[keep].astype(np.float32)))
    return out


class _EmbedderPlacement(Placement):
    def __init__(self, embedder: SetEmbedder, z: np.ndarray) -> None:
        self.embedder = embedder
        self.z = z
        self.vectors = z

    def predict(self, phi: np.ndarray) -> np.ndarray:
        return np.asarray(self.embedder.predict(self.z, np.asarray(phi, np.float32)), dtype=np.float32)


class EmbedderRouter(Router):
    """A trained set embedder behind the router interface (its training happens elsewhere)."""

    def __init__(self, embedder: SetEmbedder, name: str = "locus") -> None:
        self.embedder = embedder
        self.name = name

    def place(self, phi: np.ndarray, labels: np.ndarray) -> Placement:
        check_evaluations(phi, labels, need_each=True)
        return _EmbedderPlacement(
            self.embedder, self.embedder.embed(to_sets(np.asarray(phi, np.float32), labels))
        )
