"""`registry.services.response.fit`: a model's item-response profile from the totals the registry holds."""

from __future__ import annotations

import uuid

import numpy as np

from registry.item_response import difficulties, fit_profile
from registry.services.response import fit, group_of


def _questions(
    n: int, seed: int
) -> tuple[list[uuid.UUID], dict[uuid.UUID, tuple[float, int, str | None, str | None]]]:
    rng = np.random.default_rng(seed)
    benches, cats = [None, "", "gsm8k", "math"], [None, "", "algebra", "geometry"]
    qids = [uuid.UUID(int=int(rng.integers(1, 2**63))) for _ in range(n)]
    stats = {
        q: (float(rng.integers(0, 40)), 40, benches[int(rng.integers(0, 4))], cats[int(rng.integers(0, 4))])
        for q in qids
    }
    return qids, stats


def test_fit_is_the_profile_over_the_groups_by_name() -> None:
    """Each distinct group name (benchmark and category, empty the same as none) is one group: the
    same ability and offsets as fitting with the names numbered in sorted order."""
    qids, stats = _questions(200, 0)
    y = (np.random.default_rng(1).random(len(qids)) < 0.6).astype(np.float64)
    got = fit(qids, y, stats)

    rows = [stats[q] for q in qids]
    names, groups = np.unique([group_of(r) for r in rows], return_inverse=True)
    b = difficulties(np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.float64))
    want = fit_profile(b, y, groups, len(names))
    assert got.ability == want.ability
    assert got.offsets == {str(n): float(want.offsets[i]) for i, n in enumerate(names)}
    assert len(got.offsets) == 9  # 3 benchmarks ("" is none) x 3 categories


def test_an_empty_benchmark_or_category_is_the_same_group_as_none() -> None:
    """Questions whose benchmark or category is "" on some and None on others (as `_questions` draws
    them) fit exactly as if every one of them were None."""
    qids, stats = _questions(60, 2)
    assert {s[2] for s in stats.values()} >= {None, ""} and {s[3] for s in stats.values()} >= {None, ""}
    y = (np.random.default_rng(3).random(len(qids)) < 0.5).astype(np.float64)
    blank = {q: (s, c, b or None, k or None) for q, (s, c, b, k) in stats.items()}
    assert fit(qids, y, stats) == fit(qids, y, blank)
