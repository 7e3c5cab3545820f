"""The geometry loss and figures: distances that track disagreement, samples of one model together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoder.evaluation import evaluate
from encoder.geometry import (
    combined_distance,
    draw_spread,
    fit_scale,
    geometry_report,
    own_samples,
    tpr_at_fpr,
)
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from encoder.simulate import PoolSpec, simulate_pool
from encoder.train import geometry_loss, prepare_source, train_disagreement
from tests.encoder.conftest import SMALL, train_planted


def test_geometry_loss_is_zero_for_proportional_distances_and_scale_free() -> None:
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    d = torch.cdist(z, z)
    assert geometry_loss(z, 2.0 * d).item() == pytest.approx(0.0, abs=1e-6)
    assert geometry_loss(10.0 * z, d).item() == pytest.approx(0.0, abs=1e-6)
    wrong = torch.tensor([[np.nan, 1.0, 0.0], [np.nan, np.nan, 1.0], [np.nan, np.nan, np.nan]])
    assert geometry_loss(z, wrong).item() > 0.1  # model 0 and 2 should coincide but sit 4 apart


def test_geometry_loss_ignores_unknown_pairs() -> None:
    z = torch.randn(4, 3)
    t = torch.full((4, 4), float("nan"))
    assert geometry_loss(z, t).item() == 0.0


def test_train_disagreement_counts_only_shared_questions() -> None:
    labels = np.array([[1, 0, 1, np.nan], [1, 1, 1, 0], [np.nan, np.nan, 0, 0]], dtype=np.float32)
    d = train_disagreement(labels, np.arange(4), min_shared=2)
    assert d[0, 1] == pytest.approx(1 / 3)  # 3 shared, one differs
    assert d[1, 2] == pytest.approx(0.5)
    assert np.isnan(d[0, 2])  # one shared question < min_shared


@pytest.fixture(scope="module")
def planted() -> tuple:
    pool = simulate_pool(
        PoolSpec(n_models=24, n_questions=500, n_categories=4, query_dim=SMALL.query_dim, missing=0.0, seed=3)
    )
    return prepare_source(pool.to_source(), pool.phi, split_seed=0), pool


def test_geometry_training_makes_samples_of_one_model_agree(planted: tuple) -> None:
    """Sample consistency on a planted pool: two disjoint samples of one model land closer together
    than samples of distinct models, and distance tracks test-question disagreement close to the
    split-half ceiling of the target itself; an untrained encoder does neither."""
    ts, pool = planted

    def report(model: LocusModel) -> dict:
        return geometry_report(
            LocusEmbedder(model).embed, pool.labels, ts.phi, ts.split.train, ts.split.test, k=64, seed=0
        )

    torch.manual_seed(0)
    untrained = report(LocusModel(SMALL).eval())
    trained = report(train_planted(ts, 1.0))
    assert trained["pearson"] > 0.8 * trained["ceiling"], trained
    assert trained["pearson"] > untrained["pearson"] + 0.1, (trained, untrained)
    assert trained["same_tpr"] > untrained["same_tpr"], (trained, untrained)


def test_draw_spread_first_draw_is_the_reports_and_the_gap_is_paired(planted: tuple) -> None:
    """The spread's first draw is the one `geometry_report` makes with that seed (same Pearson, same
    accuracy difference); further draws differ; the gap is embedding minus accuracy difference per
    draw, and a baseline's vectors are placed from each draw's samples."""
    ts, pool = planted
    torch.manual_seed(0)
    embed = LocusEmbedder(LocusModel(SMALL).eval()).embed
    args = (embed, pool.labels, ts.phi, ts.split.train, ts.split.test)
    rep = geometry_report(*args, k=32, seed=5)
    placed: list[int] = []

    def accuracy_vector(samples: list[np.ndarray]) -> np.ndarray:
        placed.append(len(samples))
        return np.array([[pool.labels[m, q].mean()] for m, q in enumerate(samples)])

    one = draw_spread(*args, k=32, seeds=[5], extra_vectors={"acc": accuracy_vector})
    assert one["pearson_mean"] == pytest.approx(rep["pearson"])
    assert one["acc_diff_pearson_mean"] == pytest.approx(rep["acc_diff_pearson"])
    assert one["acc_pearson_mean"] == pytest.approx(rep["acc_diff_pearson"])  # |a - b| as a 1-d vector
    assert np.isnan(one["pearson_sd"]) and one["draws"] == 1
    three = draw_spread(*args, k=32, seeds=[5, 6, 7])
    assert three["draws"] == 3 and three["pearson_sd"] > 0
    assert three["gap_mean"] == pytest.approx(three["pearson_mean"] - three["acc_diff_pearson_mean"])
    assert 0 <= three["gap_positive"] <= 3
    assert placed == [pool.labels.shape[0]]


def test_combined_distance_moves_from_embedding_to_observed_with_evidence() -> None:
    emb = np.array([[0.0, 2.0], [2.0, 0.0]])
    obs = np.array([[0.0, 0.5], [0.5, 0.0]])
    none = combined_distance(emb, obs, np.zeros((2, 2)), scale=10.0, prior=64)
    lots = combined_distance(emb, obs, np.full((2, 2), 6400.0), scale=10.0, prior=64)
    assert none[0, 1] == pytest.approx(0.2)
    assert lots[0, 1] == pytest.approx(0.5, abs=0.01)
    assert fit_scale(np.array([2.0, 4.0]), np.array([1.0, 2.0])) == pytest.approx(2.0)


def test_tpr_at_fpr_and_own_samples() -> None:
    assert tpr_at_fpr(np.array([0.005, 0.015, 0.9]), np.arange(1, 101) / 100.0, 0.01) == pytest.approx(2 / 3)
    labels = np.array([[1, np.nan, 0, 1], [0, 1, 1, 1]], dtype=np.float32)
    s = own_samples(labels, np.arange(4), 2, np.random.default_rng(0))
    assert all(len(q) == 2 for q in s) and 1 not in s[0]


def test_evaluate_reports_the_draw_spread_beside_the_first_draw(planted: tuple) -> None:
    """`evaluate` with draws > 1: each K's report holds the spread, whose first seed is the report's own
    draw, and routing at routing_k as before; with one draw, no spread."""
    ts, _pool = planted
    torch.manual_seed(0)
    emb = LocusEmbedder(LocusModel(SMALL).eval())
    focus = np.arange(6)
    out = evaluate(emb, ts, focus, [32], 4, {}, routing_k=32, draws=3)
    rep = out["by_k"]["32"]
    assert rep["draws"]["draws"] == 3 and rep["draws"]["seeds"][0] == 4 * 1000 + 32
    assert len(set(rep["draws"]["seeds"])) == 3 and "routing_hit1" in rep
    one = draw_spread(
        emb.embed, ts.source.labels, ts.phi, ts.split.train, ts.split.test, k=32, seeds=[4032], focus=focus
    )
    assert one["pearson_mean"] == pytest.approx(rep["pearson"])
    assert "draws" not in evaluate(emb, ts, focus, [32], 4, {}, routing_k=32)["by_k"]["32"]
