"""Verdicts from shared-question scores: stated error bounds, undetermined on thin evidence."""

from __future__ import annotations

import numpy as np
import pytest

from registry.decisions.errors import InvalidDecisionInput
from registry.decisions.evidence import (
    Tolerance,
    bounds,
    candidate_cap,
    closer_than,
    distinct_disagreements,
    nearest_disagreements,
    questions_needed,
    shared_evidence,
    tolerance_from_pairs,
    verdict,
)

TOL = Tolerance(same=0.12, related=0.3, alpha=0.05)


def test_bounds_cover_the_rate_and_shrink_with_evidence() -> None:
    lo, hi = bounds(6, 128, 0.05)
    assert lo < 6 / 128 < hi
    lo2, hi2 = bounds(60, 1280, 0.05)
    assert hi2 - lo2 < hi - lo
    assert bounds(0, 10, 0.05)[0] == 0.0 and bounds(10, 10, 0.05)[1] == 1.0


def test_false_positive_rate_is_at_most_alpha_at_the_tolerance() -> None:
    """A model that truly disagrees on `same` of the questions is called `same` at most alpha of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    trials = 4000
    for _ in range(trials):
        a = np.zeros(128)
        b = (rng.random(128) < TOL.same).astype(float)
        hits += verdict(shared_evidence(a, b, TOL.alpha), TOL) == "same"
    assert hits / trials <= TOL.alpha


def test_thin_evidence_is_undetermined_and_says_how_much_more_is_needed() -> None:
    a = np.ones(8)
    ev = shared_evidence(a, a, TOL.alpha)  # identical, but only 8 questions
    assert verdict(ev, TOL) == "undetermined"
    n = questions_needed(0.0, TOL)
    assert n is not None and n > 8
    assert verdict(shared_evidence(np.ones(n), np.ones(n), TOL.alpha), TOL) == "same"
    assert questions_needed(0.2, TOL) is None  # more of this evidence can never make it `same`


def test_verdicts_span_same_related_different() -> None:
    a = np.zeros(200)
    b = a.copy()
    assert verdict(shared_evidence(a, b, TOL.alpha), TOL) == "same"
    b[:40] = 1  # 20% apart
    assert verdict(shared_evidence(a, b, TOL.alpha), TOL) == "related"
    b[:120] = 1  # 60% apart
    assert verdict(shared_evidence(a, b, TOL.alpha), TOL) == "different"


def test_candidate_cap_blocks_same_when_the_candidate_has_a_close_neighbour() -> None:
    a = np.zeros(400)
    b = a.copy()
    b[:8] = 1  # 2% apart: same under the global tolerance
    ev = shared_evidence(a, b, TOL.alpha)
    assert verdict(ev, TOL) == "same"
    # the candidate's nearest registered model disagrees with it on only 4%: half is 2%, not enough
    assert verdict(ev, TOL, candidate_cap(0.04)) == "undetermined"
    assert candidate_cap(None) is None and candidate_cap(float("inf")) is None


def test_sign_test_separates_two_candidates_only_with_enough_differing_questions() -> None:
    mine = np.zeros(100)
    x = np.zeros(100)
    y = np.zeros(100)
    y[:20] = 1  # x and y differ on 20 questions; the endpoint sides with x on all of them
    assert closer_than(mine, x, y, 0.05)
    y2 = np.zeros(100)
    y2[:2] = 1  # only 2 differing questions: not significant
    assert not closer_than(mine, x, y2, 0.05)
    assert not closer_than(mine, x, x, 0.05)


def test_tolerance_from_registered_pairs() -> None:
    labels = np.array(
        [
            [1, 1, 0, 0] * 20,
            [1, 0, 0, 0] * 20,  # 25% from row 0
            [0, 0, 0, 0] * 20,  # constant, and 25% from row 1
            [0, 0, 0, 0] * 20,  # the same constant: not a distinct pair
            [1, 1, 0, 0] * 20,  # identical to row 0: a duplicate, not a distinct pair
        ],
        dtype=np.float32,
    )
    d = distinct_disagreements(labels)
    assert sorted(np.round(d, 3).tolist()) == [0.25] * 4 + [0.5] * 4
    near = nearest_disagreements(labels)
    assert near[0] == pytest.approx(0.25) and near[2] == pytest.approx(0.25)
    tol = tolerance_from_pairs(d, max_same=0.12)
    assert tol.same == 0.12 and tol.floor == pytest.approx(0.25) and tol.distinct_pairs == 8
    assert tolerance_from_pairs(np.array([0.05, 0.5]), max_same=0.12).same <= 0.05
    assert tolerance_from_pairs(np.zeros(0)).same == 0.10
    with pytest.raises(InvalidDecisionInput):
        Tolerance(same=0.5, related=0.2)
