"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encoder import metrics

nan = np.nan

# 4 queries x 3 models; query 3 has no labelled model and is skipped by every routing metric.
Y = np.array(
    [
        [1.0, 0.0, nan],
        [0.0, 1.0, 1.0],
        [0.0, 0.0, 1.0],
        [nan, nan, nan],
    ]
)
P = np.array(
    [
        [0.9, 0.2, 0.99],  # model 2 is unlabelled here: the top labelled pick is model 0 (correct)
        [0.7, 0.6, 0.1],  # picks model 0 (wrong); top-2 adds model 1 (correct)
        [0.4, 0.3, 0.2],  # picks model 0 (wrong); top-2 adds model 1 (wrong)
        [0.5, 0.5, 0.5],
    ]
)


def test_routing_hit_at_k_by_hand() -> None:
    assert metrics.routing_hit_at_k(P, Y, 1) == pytest.approx(1 / 3)
    assert metrics.routing_hit_at_k(P, Y, 2) == pytest.approx(2 / 3)
    # k beyond the number of labelled models: query 0 has only two, still counted once
    assert metrics.routing_hit_at_k(P, Y, 3) == pytest.approx(1.0)
    assert metrics.routing_hit_at_k(P, Y, 10) == pytest.approx(1.0)


def test_routing_soft_scores_take_best_pick() -> None:
    y = np.array([[0.2, 0.8], [0.6, 0.1]])
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert metrics.routing_hit_at_k(p, y, 1) == pytest.approx((0.2 + 0.1) / 2)
    assert metrics.routing_hit_at_k(p, y, 2) == pytest.approx((0.8 + 0.6) / 2)


def test_routing_ties_go_to_lower_index() -> None:
    y = np.array([[0.0, 1.0]])
    assert metrics.routing_hit_at_k(np.array([[0.5, 0.5]]), y, 1) == 0.0


def test_routing_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.routing_hit_at_k(P[:, :2], Y)
    with pytest.raises(ValueError, match="k must be"):
        metrics.routing_hit_at_k(P, Y, 0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.routing_hit_at_k(np.full_like(P, nan), Y)


def test_routing_all_unlabelled_is_nan() -> None:
    assert math.isnan(metrics.routing_hit_at_k(np.zeros((2, 2)), np.full((2, 2), nan)))


def test_correctness_accuracy_auc_brier_by_hand() -> None:
    # labelled pairs (pred, label): (.9,1) (.2,0) (.7,0) (.6,1) (.1,1) (.4,0) (.3,0) (.2,1)
    # thresholded agreement: yes yes no yes no yes yes no -> 5/8
    assert metrics.correctness_accuracy(P, Y) == pytest.approx(5 / 8)
    sq = [0.01, 0.04, 0.49, 0.16, 0.81, 0.16, 0.09, 0.64]
    assert metrics.brier(P, Y) == pytest.approx(sum(sq) / 8)
    # positives .9 .6 .1 .2 vs negatives .2 .7 .4 .3: pairs won (ties count 1/2)
    # .9 beats 4; .6 beats 3 (.2 .4 .3); .1 beats 0; .2 ties .2, beats 0 -> 7.5 of 16
    assert metrics.auc(P, Y) == pytest.approx(7.5 / 16)


def test_auc_single_class_is_nan() -> None:
    assert math.isnan(metrics.auc(np.array([[0.3, 0.8]]), np.array([[1.0, 1.0]])))


def test_reference_points_by_hand() -> None:
    assert metrics.oracle(Y) == pytest.approx(1.0)
    # per query: mean of labelled scores 1/2, 2/3, 1/3 -> mean 1/2
    assert metrics.random_choice(Y) == pytest.approx(0.5)
    np.testing.assert_allclose(metrics.model_mean_scores(Y), [1 / 3, 1 / 3, 1.0])


def test_best_single_is_chosen_on_selection_set() -> None:
    y_sel = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, nan]])  # means 1, .5, 0 -> model 0 ranked first
    # on test, model 0 scores 1, 0, 0 on queries 0-2 -> 1/3; top-2 adds model 1 -> 0 +1 +0 -> 2/3
    assert metrics.best_single(y_sel, Y, 1) == pytest.approx(1 / 3)
    assert metrics.best_single(y_sel, Y, 2) == pytest.approx(2 / 3)


def test_best_single_falls_back_to_a_labelled_model() -> None:
    y_sel = np.array([[1.0, nan]])  # model 1 never seen in selection: ranked last, still usable
    y_test = np.array([[nan, 1.0], [0.0, 1.0]])
    assert metrics.best_single(y_sel, y_test) == pytest.approx(0.5)


def test_disagreement_matrix_by_hand() -> None:
    rate, shared = metrics.disagreement_matrix(Y)
    # models 0,1 share queries 0,1,2: answers (1,0) (0,1) (0,0) -> 2/3 disagree
    # models 0,2 share 1,2: (0,1) (0,1) -> 1 ; models 1,2 share 1,2: (1,1) (0,1) -> 1/2
    np.testing.assert_array_equal(shared, [[3, 3, 2], [3, 3, 2], [2, 2, 2]])
    np.testing.assert_allclose(rate, [[0, 2 / 3, 1], [2 / 3, 0, 0.5], [1, 0.5, 0]])


def test_pairwise_distances() -> None:
    z = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(
        metrics.pairwise_distances(z), [[0, 5, 1], [5, 0, math.sqrt(18)], [1, math.sqrt(18), 0]]
    )


def _geometry_fixture() -> tuple[np.ndarray, np.ndarray]:
    # 4 models on 40 questions: model b disagrees with a on 4, c on 12, d on 20 (a nested pattern)
    y = np.zeros((40, 4))
    y[:4, 1] = 1
    y[:12, 2] = 1
    y[:20, 3] = 1
    z = np.array([[0.0], [1.0], [3.0], [5.0]])
    return z, y


def test_distance_disagreement_perfect_monotone() -> None:
    z, y = _geometry_fixture()
    g = metrics.distance_disagreement(z, y)
    assert g.n_pairs == 6
    # distances 1 3 5 2 4 2 vs disagreement .1 .3 .5 .2 .4 .2: exactly proportional
    assert g.pearson == pytest.approx(1.0)
    assert g.spearman == pytest.approx(1.0)
    # a reflection keeps distances; swapping two models breaks the order
    assert metrics.distance_disagreement(5.0 - z, y).pearson == pytest.approx(1.0)
    assert metrics.distance_disagreement(z[[0, 2, 1, 3]], y).pearson < 0.9


def test_distance_disagreement_skips_pairs_with_few_shared() -> None:
    z, y = _geometry_fixture()
    y[25:, 3] = nan  # model d now shares 25 questions with each other model
    assert metrics.distance_disagreement(z, y, min_shared=20).n_pairs == 6
    assert metrics.distance_disagreement(z, y, min_shared=30).n_pairs == 3


def test_nn_agreement_by_hand() -> None:
    z, y = _geometry_fixture()
    # nearest neighbours: a->b (agree 36/40), b->a (36/40), c->b (32/40; the tie with d goes to the
    # lower index), d->c (32/40)
    assert metrics.nn_agreement(z, y) == pytest.approx((0.9 + 0.9 + 0.8 + 0.8) / 4)
    y2 = y.copy()
    y2[10:, 1] = nan  # b shares only 10 questions with anyone: a and b are skipped, c->b too
    assert metrics.nn_agreement(z, y2) == pytest.approx(0.8)
