"""Synthetic, EmbedLLM-shaped model pools with known true probabilities.

For tests and scale benchmarks only: the structure is planted by hand (a low-rank logistic model),
so nothing measured on a simulated pool is a quality result about real models.

Generative model (all draws from one seeded numpy Generator, vectorised, chunked over models):
- Question q has a category c(q), a latent trait vector a_q = A[c] + noise (L-d) and a difficulty
  b_q; its encoding phi_q is a fixed random projection of a_q plus noise, unit-normalised, so phi
  carries (noisy) information about what the question needs.
- Model m has an ability vector theta_m (L-d) and a general skill s_m; the true probability is
  P[m, q] = sigmoid(s_m + theta_m . a_q - b_q).
- Models come in families: a base model; fine-tunes (base + a moderate perturbation and a boost in
  one category); quantised near-copies (base or fine-tune + a tiny perturbation); and providers
  serving one model (the exact same theta and s, i.e. the same true P, scored independently).
- Labels are Bernoulli(P). Gaps: each model misses whole categories with some probability (like
  uneven task coverage) and isolated scores at random; missing scores are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoder.data import EvalSource

KINDS = ("base", "finetune", "quantised", "provider")


@dataclass(frozen=True)
class PoolSpec:
    """Shape of a simulated pool; fractions of non-base kinds are of the whole pool."""

    n_models: int = 112
    n_questions: int = 2000
    n_categories: int = 10
    query_dim: int = 384
    latent_dim: int = 16
    finetune_fraction: float = 0.3
    quantised_fraction: float = 0.15
    provider_fraction: float = 0.1
    category_gap: float = 0.05
    missing: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_models", "n_questions", "n_categories", "query_dim", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"PoolSpec.{name} must be >= 1, got {getattr(self, name)}")
        fractions = (self.finetune_fraction, self.quantised_fraction, self.provider_fraction)
        if any(f < 0 for f in fractions) or sum(fractions) >= 1.0:
            raise ValueError(
                f"PoolSpec fractions {fractions} must be >= 0 and sum below 1 (some models must be bases)"
            )
        for name in ("category_gap", "missing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"PoolSpec.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class SimulatedPool:
    """A simulated pool and its ground truth. Rows of every (M, ...) array are models."""

    spec: PoolSpec
    phi: np.ndarray  # (Q, query_dim) float32, unit rows
    categories: np.ndarray  # (Q,) int
    true_p: np.ndarray  # (M, Q) float32
    labels: np.ndarray  # (M, Q) float32, NaN where not evaluated
    family: np.ndarray  # (M,) int: models derived from one base share it
    same_model: np.ndarray  # (M,) int: provider copies of one model share it (same true P)
    parent: np.ndarray  # (M,) int: row of the model it derives from, -1 for a base
    kind: np.ndarray  # (M,) str: one of KINDS
    model_names: list[str]

    @property
    def n_models(self) -> int:
        return int(self.labels.shape[0])

    def to_source(self, name: str = "simulated") -> EvalSource:
        """The labels as an `EvalSource` (texts are placeholders: use `phi` as the query encodings)."""
        q = self.labels.shape[1]
        return EvalSource(
            name=name,
            question_ids=[f"sim/q{i}" for i in range(q)],
            texts=[f"simulated question {i} (category {c})" for i, c in enumerate(self.categories)],
            categories=[f"cat{c}" for c in self.categories],
            model_names=list(self.model_names),
            labels=self.labels,
            meta={"simulated": "true", "seed": str(self.spec.seed)},
        )


def _lineage(spec: PoolSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Kinds (M,) and parents (M,) in creation order: bases, fine-tunes, quantised copies, providers."""
    m = spec.n_models
    n_ft = int(m * spec.finetune_fraction)
    n_qt = int(m * spec.quantised_fraction)
    n_pv = int(m * spec.provider_fraction)
    n_base = m - n_ft - n_qt - n_pv
    kind = np.repeat(np.arange(4), [n_base, n_ft, n_qt, n_pv])
    parent = np.full(m, -1, dtype=np.int64)
    parent[n_base : n_base + n_ft] = rng.integers(n_base, size=n_ft)  # fine-tunes of a base
    derivable = n_base + n_ft  # quantised copies and providers derive from a base or a fine-tune
    parent[n_base + n_ft :] = rng.integers(derivable, size=n_qt + n_pv)
    return kind, parent


def simulate_pool(spec: PoolSpec | None = None, *, chunk: int = 4096) -> SimulatedPool:
    """Draw a pool; memory is O(M * Q) for the outputs, and models are generated `chunk` at a time."""
    spec = spec or PoolSpec()
    rng = np.random.default_rng(spec.seed)
    q, c, lat = spec.n_questions, spec.n_categories, spec.latent_dim

    # Questions.
    cat = rng.integers(c, size=q)
    centres = rng.normal(size=(c, lat))
    a = centres[cat] + 0.5 * rng.normal(size=(q, lat))  # (Q, L)
    a /= np.sqrt(lat)
    b = rng.normal(scale=1.0, size=q)
    proj = rng.normal(size=(lat, spec.query_dim)) / np.sqrt(lat)
    phi = a @ proj * np.sqrt(lat) + 0.3 * rng.normal(size=(q, spec.query_dim))  # (Q, d)
    phi /= np.linalg.norm(phi, axis=1, keepdims=True)

    # Models: lineage first, then parameters in creation order (parents always come first).
    kind, parent = _lineage(spec, rng)
    m = spec.n_models
    theta = rng.normal(scale=1.5, size=(m, lat))
    skill = rng.normal(scale=1.0, size=m)
    ft = kind == 1
    theta[ft] = theta[parent[ft]] + rng.normal(scale=0.6, size=(int(ft.sum()), lat))
    # a fine-tune is also pushed towards one category's needs
    boost_cat = rng.integers(c, size=int(ft.sum()))
    theta[ft] += 0.5 * centres[boost_cat]
    skill[ft] = skill[parent[ft]] + rng.normal(scale=0.3, size=int(ft.sum()))
    qt = kind == 2
    theta[qt] = theta[parent[qt]] + rng.normal(scale=0.05, size=(int(qt.sum()), lat))
    skill[qt] = skill[parent[qt]] - np.abs(rng.normal(scale=0.05, size=int(qt.sum())))
    pv = kind == 3
    theta[pv] = theta[parent[pv]]
    skill[pv] = skill[parent[pv]]

    family = np.arange(m)
    same = np.arange(m)
    for i in np.flatnonzero(parent >= 0):  # parents precede children, so one pass resolves chains
        family[i] = family[parent[i]]
        if kind[i] == 3:
            same[i] = same[parent[i]]

    # Shuffle rows so that structure cannot be read off the index.
    order = rng.permutation(m)
    inverse = np.empty(m, dtype=np.int64)
    inverse[order] = np.arange(m)
    theta, skill, kind = theta[order], skill[order], kind[order]
    parent = np.where(parent[order] >= 0, inverse[np.maximum(parent[order], 0)], -1)
    family = inverse[family[order]]
    same = inverse[same[order]]

    true_p = np.empty((m, q), dtype=np.float32)
    labels = np.empty((m, q), dtype=np.float32)
    for start in range(0, m, chunk):
        sl = slice(start, min(m, start + chunk))
        logit = skill[sl, None] + theta[sl] @ a.T - b[None, :]  # (C, Q)
        p = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        y = (rng.random(p.shape, dtype=np.float32) < p).astype(np.float32)
        gap_cats = rng.random((p.shape[0], c)) < spec.category_gap  # (C, n_categories)
        gone = gap_cats[:, cat] | (rng.random(p.shape, dtype=np.float32) < spec.missing)
        everything = gone.all(axis=1)
        gone[everything] = False  # every model keeps at least its scores
        y[gone] = np.nan
        true_p[sl], labels[sl] = p, y

    suffix = {0: "", 1: "-ft", 2: "-q4", 3: "@provider"}
    names = [f"fam{family[i]:06d}{suffix[int(kind[i])]}-{i:06d}" for i in range(m)]
    return SimulatedPool(
        spec=spec,
        phi=phi.astype(np.float32),
        categories=cat,
        true_p=true_p,
        labels=labels,
        family=family,
        same_model=same,
        parent=parent,
        kind=np.asarray(KINDS)[kind],
        model_names=names,
    )
