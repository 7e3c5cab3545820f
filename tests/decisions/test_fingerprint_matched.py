"""Matched-question fingerprinting: the comparison itself, its calibration and the verdict's basis."""

from __future__ import annotations

import numpy as np
import pytest

from registry.decisions import (
    FingerprintThresholds,
    calibrate_matched,
    calibrate_thresholds,
    constant_rows,
    distinct_matched_distances,
    flipped_distances,
    load_calibration,
    matched_distances,
    save_calibration,
)
from registry.decisions.evidence import Tolerance, shared_evidence
from registry.decisions.service import judge
from tests.decisions.test_fingerprint import mean_embed


def score_matrix(
    n_models: int = 8, n_q: int = 300, d: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n_q, d)).astype(np.float32)
    skills = rng.normal(scale=2.0, size=(n_models, d))
    labels = (rng.random((n_models, n_q)) < 1 / (1 + np.exp(-skills @ phi.T))).astype(np.float32)
    labels[0, :40] = np.nan  # a model not scored on some questions
    return labels, phi


def test_identical_scores_on_identical_questions_are_at_distance_zero() -> None:
    labels, phi = score_matrix()
    y = labels[1, :128]
    d = matched_distances([((phi[:128], y), (phi[:128], y.copy()))], mean_embed)
    assert d.shape == (1,) and d[0] == 0.0
    other = matched_distances([((phi[:128], y), (phi[:128], labels[2, :128]))], mean_embed)
    assert other[0] > 0.0


def test_flips_move_a_model_away_and_distinct_pairs_skip_unshared_questions() -> None:
    labels, phi = score_matrix()
    assert np.all(flipped_distances(labels, phi, mean_embed, n=128, flip_rate=0.0) == 0.0)
    d5 = flipped_distances(labels, phi, mean_embed, n=128, flip_rate=0.05, seed=1)
    d20 = flipped_distances(labels, phi, mean_embed, n=128, flip_rate=0.20, seed=1)
    assert len(d5) == 8 and np.all(d5 > 0) and np.median(d20) > np.median(d5)
    distinct = distinct_matched_distances(labels, phi, mean_embed, n=128, groups=[0, 0, *range(1, 7)])
    assert len(distinct) == 28 - 1  # the pair in group 0 is not a distinct pair
    assert len(distinct_matched_distances(labels, phi, mean_embed, n=270)) == 21  # model 0 shares only 260


def test_pairs_of_constant_models_are_not_distinct_evidence() -> None:
    labels, phi = score_matrix()
    labels[3] = 0.0
    labels[4] = 0.0  # two models failing everything: identical on any sample
    labels[5] = 1.0  # constant too, but a different constant: still told apart
    assert np.array_equal(constant_rows(labels), [np.nan] * 3 + [0, 0, 1] + [np.nan] * 2, equal_nan=True)
    distinct = distinct_matched_distances(labels, phi, mean_embed, n=128)
    assert len(distinct) == 28 - 1 and np.all(distinct > 0)  # only the pair (3, 4) is left out


def test_matched_calibration_keeps_the_fpr_and_separates_flipped_reruns() -> None:
    labels, phi = score_matrix(n_models=12, seed=3)
    th, same, distinct = calibrate_matched(labels, phi, mean_embed, n=128, flip_rate=0.05)
    assert th.fpr is not None and th.fpr <= 0.01 and len(distinct) == 66
    assert th.tpr is not None and th.tpr == np.mean(same < th.same) and th.tpr >= 0.9
    assert th.notes["flip_rate"] == 0.05 and th.same <= th.related


def test_verdict_falls_back_to_the_global_distance_when_too_few_questions_are_shared() -> None:
    global_th = FingerprintThresholds(same=0.5, related=1.0, n_evaluations=128)
    tol = Tolerance(same=0.12, related=0.3, alpha=0.05)
    # the embedding alone never says `same`: in the same-model range it is `undetermined`
    fallback = judge(0.3, None, 10, global_th, n_evaluations=128)
    assert (fallback.verdict, fallback.basis) == ("undetermined", "global") and "probe" in fallback.why
    thin = judge(0.3, None, 10, global_th, n_evaluations=16)
    assert thin.verdict == "undetermined" and "fewer" in thin.why
    assert judge(0.7, None, 0, global_th, n_evaluations=128).verdict == "related"
    a = np.zeros(64)
    b = a.copy()
    b[:16] = 1.0  # 16 of 64 differ: surely more than `same` allows, below `related`
    matched = judge(0.3, 0.15, 64, global_th, shared_evidence(a, b, tol.alpha), tol, 128)
    assert (matched.verdict, matched.basis) == ("related", "matched")
    no_evidence = judge(2.0, 0.0, 64, global_th, None, tol, 128)
    assert (no_evidence.verdict, no_evidence.basis) == ("different", "global")
    assert judge(0.3, None, 0, None).verdict is None


def test_calibration_file_round_trips_both_kinds(tmp_path) -> None:
    g = calibrate_thresholds(np.array([0.1]), np.array([1.0, 2.0]), n_evaluations=128)
    m = calibrate_thresholds(
        np.array([0.01]), np.array([0.3, 0.4]), n_evaluations=128, notes={"flip_rate": 0.05}
    )
    path = tmp_path / "calibration.json"
    save_calibration(path, g, m)
    assert load_calibration(path) == (g, m)
    assert FingerprintThresholds.load(path) == g  # readers of the global thresholds ignore the new key
    save_calibration(path, g, None)
    assert load_calibration(path) == (g, None)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_calibration(path)
