"""Fingerprint calibration separates planted models; verdicts follow the thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from registry.decisions import (
    FingerprintThresholds,
    InvalidDecisionInput,
    calibrate,
    calibrate_thresholds,
)


def mean_embed(sets):  # a transparent set embedding: the mean of y-signed query encodings
    return np.stack([(phi * (2 * y[:, None] - 1)).mean(axis=0) for phi, y in sets])


def planted_models(n_models: int = 12, n_q: int = 600, d: int = 16, seed: int = 0):
    """Models with distinct skill directions; model i and i+6 are one model under two names."""
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n_q, d))
    skills = rng.normal(scale=2.0, size=(n_models // 2, d))
    sets = []
    for i in range(n_models):
        p = 1 / (1 + np.exp(-phi @ skills[i % (n_models // 2)]))
        sets.append((phi, (rng.random(n_q) < p).astype(np.float32)))
    return sets


def test_calibration_separates_same_from_distinct_models() -> None:
    sets = planted_models()
    groups = [i % 6 for i in range(12)]  # i and i+6 are the same model: neither same nor distinct pairs
    th, sample = calibrate(sets, mean_embed, n=128, repeats=4, groups=groups, seed=1)
    assert sample.models_used == 12
    assert len(sample.same) == 48 and len(sample.related) == 6 * 4
    assert th.fpr is not None and th.fpr <= 0.01
    assert th.tpr is not None and th.tpr >= 0.95
    assert th.same <= th.related
    # a model registered under two names is judged "same"
    assert np.mean([th.verdict(x) == "same" for x in sample.related]) >= 0.9
    assert th.verdict(10 * th.related) == "different"


def test_thresholds_follow_the_requested_fpr() -> None:
    same = np.array([0.1, 0.2, 0.3])
    distinct = np.arange(1.0, 101.0)  # 100 distinct pairs: 1 may fall below at fpr 0.01
    th = calibrate_thresholds(same, distinct, n_evaluations=128, max_fpr=0.01, related_quantile=0.2)
    assert th.same == 2.0 and th.fpr == pytest.approx(0.01) and th.tpr == 1.0
    assert th.related == pytest.approx(np.quantile(distinct, 0.2))
    assert [th.verdict(x) for x in (1.5, 2.0, 30.0)] == ["same", "related", "different"]


def test_thresholds_round_trip(tmp_path) -> None:
    th = calibrate_thresholds(np.array([0.1]), np.array([1.0, 2.0]), n_evaluations=64)
    th.save(tmp_path / "c.json")
    assert FingerprintThresholds.load(tmp_path / "c.json") == th


def test_calibration_rejects_too_little_data() -> None:
    sets = planted_models(n_q=200)
    with pytest.raises(InvalidDecisionInput, match="256 evaluations"):
        calibrate(sets, mean_embed, n=128)
    with pytest.raises(InvalidDecisionInput, match="same <= related"):
        FingerprintThresholds(same=2.0, related=1.0)
