"""Baseline routers on tiny synthetic pools with a planted latent structure."""

from __future__ import annotations

import numpy as np
import pytest

from encoder import baselines, metrics
from encoder.config import LocusConfig
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel

nan = np.nan


def planted(seed: int = 0, n_models: int = 40, n_questions: int = 600, d: int = 16, cats: int = 4):
    """phi (Q, d) clustered by category; true P (M, Q) = sigmoid(skill[m, cat(q)] - difficulty[q])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(cats, d))
    cat = rng.integers(cats, size=n_questions)
    phi = (centres[cat] + 0.3 * rng.normal(size=(n_questions, d))).astype(np.float32)
    skill = rng.normal(scale=2.0, size=(n_models, cats))
    difficulty = rng.normal(scale=0.5, size=n_questions)
    p = 1.0 / (1.0 + np.exp(-(skill[:, cat] - difficulty)))
    y = (rng.random(p.shape) < p).astype(np.float32)
    return phi, p.astype(np.float32), y, cat


@pytest.fixture(scope="module")
def pool():
    phi, p, y, cat = planted()
    train_q, test_q = np.arange(400), np.arange(400, 600)
    train_m = np.arange(32)  # models 32..39 are never seen by fit()
    return phi, p, y, cat, train_q, test_q, train_m


def expected_hit1(router: baselines.Router, pool, models: np.ndarray) -> float:
    """Routing hit@1 on test questions, scored by the true probabilities (so no label noise)."""
    phi, p, y, _, train_q, test_q, _ = pool
    placed = router.place(phi[train_q], y[np.ix_(models, train_q)])
    pred = placed.predict(phi[test_q])
    assert pred.shape == (len(test_q), len(models)) and pred.dtype == np.float32
    return metrics.routing_hit_at_k(pred, p[np.ix_(models, test_q)].T, 1)


@pytest.mark.parametrize("kind", ["mf", "irt"])
def test_latent_routers_recover_planted_skills_better_than_best_single(pool, kind: str) -> None:
    phi, p, y, _, train_q, _, train_m = pool
    cfg = baselines.LatentConfig(dim=8, hidden=32, steps=300, batch_questions=128)
    router = baselines.LatentRouter(kind, cfg).fit(phi[train_q], y[np.ix_(train_m, train_q)], seed=0)
    unseen = np.arange(32, 40)
    everyone = np.arange(40)
    for models in (everyone, unseen):
        latent = expected_hit1(router, pool, models)
        single = expected_hit1(baselines.MeanScoreRouter(), pool, models)
        oracle_best = metrics.routing_hit_at_k(p[np.ix_(models, pool[5])].T, p[np.ix_(models, pool[5])].T)
        assert latent > single + 0.03, (kind, len(models), latent, single)
        assert latent <= oracle_best + 1e-6


def test_new_model_vector_is_fitted_by_gradient_on_its_evaluations(pool) -> None:
    phi, _, y, cat, train_q, _, train_m = pool
    cfg = baselines.LatentConfig(dim=8, steps=200, batch_questions=128)
    router = baselines.matrix_factorisation(cfg).fit(phi[train_q], y[np.ix_(train_m, train_q)], seed=0)
    # A new model that is right on every category-0 question and wrong elsewhere.
    labels = (cat[train_q] == 0).astype(np.float32)[None, :]
    placed = router.place(phi[train_q], labels)
    assert placed.vectors is not None and placed.vectors.shape == (1, 8)
    assert router.prior_mean is not None
    assert not np.allclose(placed.vectors[0], router.prior_mean.numpy())
    pred = placed.predict(phi)[:, 0]
    assert pred[cat == 0].mean() > 0.7 > 0.3 > pred[cat != 0].mean()


def test_latent_placement_with_few_evaluations_stays_near_the_prior(pool) -> None:
    phi, _, y, _, train_q, _, train_m = pool
    router = baselines.irt(baselines.LatentConfig(dim=8, steps=100, batch_questions=128))
    router.fit(phi[train_q], y[np.ix_(train_m, train_q)], seed=0)
    assert router.prior_mean is not None
    few = np.full((1, len(train_q)), nan, dtype=np.float32)
    few[0, :4] = 1.0
    many = np.ones((1, len(train_q)), dtype=np.float32)
    v_few = router.place(phi[train_q], few).vectors
    v_many = router.place(phi[train_q], many).vectors
    assert v_few is not None and v_many is not None
    mean = router.prior_mean.numpy()
    assert np.linalg.norm(v_few - mean) < np.linalg.norm(v_many - mean)


def test_latent_fit_is_deterministic_for_a_seed(pool) -> None:
    phi, _, y, _, train_q, _, train_m = pool
    cfg = baselines.LatentConfig(dim=4, steps=40, batch_questions=128)
    a = baselines.irt(cfg).fit(phi[train_q], y[np.ix_(train_m, train_q)], seed=3)
    b = baselines.irt(cfg).fit(phi[train_q], y[np.ix_(train_m, train_q)], seed=3)
    pa = a.place(phi[train_q], y[:, train_q]).predict(phi[:50])
    pb = b.place(phi[train_q], y[:, train_q]).predict(phi[:50])
    np.testing.assert_array_equal(pa, pb)


def test_place_before_fit_is_an_error(pool) -> None:
    phi, _, y, *_ = pool
    with pytest.raises(RuntimeError, match="fit"):
        baselines.matrix_factorisation().place(phi, y)


def test_knn_with_k1_reproduces_the_nearest_evaluated_question() -> None:
    phi = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    labels = np.array([[1.0, 0.0, 1.0], [nan, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    placed = baselines.KnnRouter(k=1).place(phi, labels)
    queries = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.2, 0.9]], dtype=np.float32)
    pred = placed.predict(queries)  # (Q, M)
    np.testing.assert_array_equal(pred[:, 0], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(pred[:, 2], [0.0, 1.0, 1.0])
    # model 1 has no label on question 0: its nearest labelled question for query 0 is question 1
    np.testing.assert_array_equal(pred[:, 1], [1.0, 1.0, 0.0])


def test_knn_averages_the_k_nearest_and_chunking_changes_nothing(pool) -> None:
    phi, _, y, _, train_q, test_q, _ = pool
    lab = y[:, train_q].copy()
    lab[3, :100] = nan  # a second observation pattern
    a = baselines.KnnRouter(k=5, chunk=7).place(phi[train_q], lab).predict(phi[test_q])
    b = baselines.KnnRouter(k=5, chunk=1000).place(phi[train_q], lab).predict(phi[test_q])
    np.testing.assert_allclose(a, b)
    unit = phi / np.linalg.norm(phi, axis=1, keepdims=True)
    sim = unit[test_q[0]] @ unit[train_q[100:]].T
    top = np.argsort(-sim)[:5]
    assert a[0, 3] == pytest.approx(lab[3, 100:][top].mean())
    assert set(np.unique(a * 5).round(4)) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


def test_knn_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        baselines.KnnRouter(k=0)


def test_best_single_is_the_mean_score_on_the_given_evaluations() -> None:
    phi = np.eye(3, dtype=np.float32)
    labels = np.array([[1.0, 1.0, 0.0], [1.0, nan, nan], [0.0, 0.5, 0.0]], dtype=np.float32)
    pred = baselines.MeanScoreRouter().place(phi, labels).predict(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(pred, [[2 / 3, 1.0, 1 / 6]] * 2, rtol=1e-6)


def test_bad_input_errors_name_the_item() -> None:
    phi = np.eye(3, dtype=np.float32)
    bad = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 2.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"model row 1, question column 2 is 2\.0"):
        baselines.MeanScoreRouter().place(phi, bad)
    empty = np.array([[1.0, 0.0, 1.0], [nan, nan, nan]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"model row\(s\) \[1\]"):
        baselines.KnnRouter().place(phi, empty)
    with pytest.raises(ValueError, match=r"labels must be \(M, 3\)"):
        baselines.MeanScoreRouter().place(phi, np.zeros((2, 4), np.float32))
    inf_phi = phi.copy()
    inf_phi[1, 1] = np.inf
    with pytest.raises(ValueError, match="phi contains"):
        baselines.matrix_factorisation().fit(inf_phi, empty)
    with pytest.raises(ValueError, match="no evaluations"):
        baselines.irt().fit(phi, np.full((2, 3), nan, np.float32))
    with pytest.raises(ValueError, match="unknown latent router kind 'svd'"):
        baselines.LatentRouter("svd")
    with pytest.raises(ValueError, match="val_fraction"):
        baselines.LatentConfig(val_fraction=1.0)


def test_embedder_router_matches_the_embedder_it_wraps(pool) -> None:
    phi, _, y, _, train_q, test_q, _ = pool
    cfg = LocusConfig(query_dim=16, width=32, heads=2, inducing=8, ffn=64, embed_dim=16, pred_hidden=16)
    embedder = LocusEmbedder(LocusModel(cfg))
    lab = y[:5, train_q].copy()
    lab[0, ::2] = nan  # a model evaluated on half the questions
    placed = baselines.EmbedderRouter(embedder).place(phi[train_q], lab)
    keep = ~np.isnan(lab[0])
    z0 = embedder.embed([(phi[train_q][keep], lab[0][keep])])
    assert placed.vectors is not None
    np.testing.assert_allclose(placed.vectors[0], z0[0], atol=1e-5)
    np.testing.assert_allclose(
        placed.predict(phi[test_q]), embedder.predict(placed.vectors, phi[test_q]), atol=1e-6
    )
