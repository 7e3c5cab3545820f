"""The simulator: seeded, shaped like EmbedLLM, and its planted lineage is visible in the truth."""

from __future__ import annotations

import numpy as np
import pytest

from encoder.simulate import KINDS, PoolSpec, SimulatedPool, simulate_pool
from encoder.train import prepare_source


@pytest.fixture(scope="module")
def pool() -> SimulatedPool:
    return simulate_pool(PoolSpec(n_models=200, n_questions=800, query_dim=32, seed=1))


def test_shapes_dtypes_and_gaps(pool: SimulatedPool) -> None:
    assert pool.labels.shape == pool.true_p.shape == (200, 800)
    assert pool.phi.shape == (800, 32) and pool.phi.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pool.phi, axis=1), 1.0, rtol=1e-5)
    assert pool.labels.dtype == np.float32 and pool.true_p.dtype == np.float32
    observed = ~np.isnan(pool.labels)
    assert observed.any(axis=1).all()
    assert 0.02 < 1 - observed.mean() < 0.15  # 5% category gaps + 2% isolated gaps
    assert set(np.unique(pool.labels[observed])) == {0.0, 1.0}
    assert set(pool.kind) == set(KINDS)
    assert len(set(pool.model_names)) == 200


def test_labels_are_draws_from_the_true_probabilities(pool: SimulatedPool) -> None:
    observed = ~np.isnan(pool.labels)
    p, y = pool.true_p[observed], pool.labels[observed]
    for lo in (0.0, 0.2, 0.4, 0.6, 0.8):
        sel = (p >= lo) & (p < lo + 0.2)
        assert abs(y[sel].mean() - p[sel].mean()) < 0.02
    assert pool.true_p.std() > 0.1  # models and questions differ


def test_seeded_and_reproducible() -> None:
    spec = PoolSpec(n_models=30, n_questions=50, query_dim=8, seed=7)
    a, b = simulate_pool(spec), simulate_pool(spec)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.phi, b.phi)
    assert a.model_names == b.model_names
    c = simulate_pool(PoolSpec(n_models=30, n_questions=50, query_dim=8, seed=8))
    assert not np.array_equal(np.nan_to_num(a.labels), np.nan_to_num(c.labels))
    # chunking over models changes nothing
    d = simulate_pool(spec, chunk=7)
    np.testing.assert_array_equal(a.true_p, d.true_p)


def test_lineage_is_planted_in_the_true_probabilities(pool: SimulatedPool) -> None:
    providers = np.flatnonzero(pool.kind == "provider")
    quantised = np.flatnonzero(pool.kind == "quantised")
    finetunes = np.flatnonzero(pool.kind == "finetune")
    bases = np.flatnonzero(pool.kind == "base")
    assert len(providers) and len(quantised) and len(finetunes)
    assert (pool.parent[bases] == -1).all() and (pool.parent[pool.kind != "base"] >= 0).all()
    for i in providers:  # same model behind another provider: same truth, independent labels
        j = pool.parent[i]
        np.testing.assert_array_equal(pool.true_p[i], pool.true_p[j])
        assert pool.same_model[i] == pool.same_model[j] and pool.family[i] == pool.family[j]
    assert len(set(pool.same_model)) == 200 - len(providers)

    def gap(rows: np.ndarray) -> float:
        return float(np.abs(pool.true_p[rows] - pool.true_p[pool.parent[rows]]).mean())

    unrelated = float(np.abs(pool.true_p[bases[:-1]] - pool.true_p[bases[1:]]).mean())
    assert gap(quantised) < 0.03 < gap(finetunes) < unrelated
    assert (pool.family[finetunes] == pool.parent[finetunes]).all()
    assert (pool.family[bases] == bases).all()


def test_converts_to_an_eval_source_that_training_accepts(pool: SimulatedPool) -> None:
    source = pool.to_source("sim")
    assert source.n_models == 200 and source.n_questions == 800
    assert source.categories[0].startswith("cat")
    ts = prepare_source(source, pool.phi, split_seed=0, holdout_fraction=0.2)
    assert ts.train_models.sum() == 160
    assert len(ts.split.train) + len(ts.split.val) + len(ts.split.test) == 800


def test_scales_to_tens_of_thousands_of_models() -> None:
    big = simulate_pool(PoolSpec(n_models=20_000, n_questions=100, query_dim=16, seed=0), chunk=3000)
    assert big.labels.shape == (20_000, 100)
    assert big.labels.nbytes == 20_000 * 100 * 4
    assert (~np.isnan(big.labels)).any(axis=1).all()
    assert len(np.unique(big.family)) < 20_000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_models", 0, "PoolSpec.n_models"),
        ("missing", 1.0, "PoolSpec.missing"),
        ("finetune_fraction", 0.9, "must be >= 0 and sum below 1"),
    ],
)
def test_bad_spec_names_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolSpec(**{field: value})  # type: ignore[arg-type]
