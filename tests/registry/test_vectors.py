"""The Qdrant adapter: filters, distances, persistence across reopen, collections tied to a fingerprint."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from registry.ports import ModelFilter, ModelPoint
from registry.vectors import QdrantIndex, to_filter


def points() -> list[ModelPoint]:
    rows = [
        ("active", "acme", ["chat", "code"], 7.0, 8_000, 0.5),
        ("active", "zeta", ["chat"], 70.0, 128_000, 3.0),
        ("unavailable", "acme", ["code"], 13.0, 32_000, 1.0),
        ("deprecated", "nova", [], None, None, None),
    ]
    out = []
    for i, (status, provider, tags, params, ctx, price) in enumerate(rows):
        payload = {"status": status, "provider": provider, "tags": tags}
        for key, value in (("params_b", params), ("context_window", ctx), ("input_price", price)):
            if value is not None:
                payload[key] = value
        out.append(ModelPoint(uuid.UUID(int=i + 1), np.eye(4, dtype=np.float32)[i] * (i + 1), payload))
    return out


@pytest.fixture
def idx(tmp_path: Path) -> QdrantIndex:
    ix = QdrantIndex(path=str(tmp_path / "q"))
    ix.ensure_collections("fp1", 4, 3)
    ix.upsert_models(points())
    return ix


def names(hits: list) -> list[int]:  # type: ignore[type-arg]
    return [h.id.int for h in hits]


def test_search_returns_euclidean_distances(idx: QdrantIndex) -> None:
    hits = idx.search_models(np.zeros(4, dtype=np.float32), 4)
    assert names(hits) == [1, 2, 3, 4]
    assert [h.distance for h in hits] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    # Self-exclusion is served without a payload filter and still returns k results.
    hits = idx.search_models(np.zeros(4, dtype=np.float32), 2, ModelFilter(exclude_ids=(uuid.UUID(int=1),)))
    assert names(hits) == [2, 3]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (ModelFilter(statuses=("active",)), [1, 2]),
        (ModelFilter(providers=("acme",), tags=("code",)), [1, 3]),
        (ModelFilter(tags=("chat", "code")), [1]),
        (ModelFilter(min_params=10.0), [2, 3]),
        (ModelFilter(max_params=10.0), [1]),
        (ModelFilter(min_context_window=30_000, max_input_price=2.0), [3]),
        (ModelFilter(include_ids=(uuid.UUID(int=4), uuid.UUID(int=2))), [2, 4]),
        (ModelFilter(statuses=("active", "deprecated"), exclude_ids=(uuid.UUID(int=2),)), [1, 4]),
    ],
)
def test_filters(idx: QdrantIndex, flt: ModelFilter, expected: list[int]) -> None:
    assert names(idx.search_models(np.zeros(4, dtype=np.float32), 10, flt)) == expected
    ids, vecs = idx.scan_models(flt)
    assert sorted(i.int for i in ids) == expected and vecs.shape == (len(expected), 4)


def test_empty_filter_is_none() -> None:
    assert to_filter(None) is None and to_filter(ModelFilter()) is None


def test_persistence_fingerprints_and_reset(tmp_path: Path) -> None:
    path = str(tmp_path / "q")
    ix = QdrantIndex(path=path)
    ix.ensure_collections("fp1", 4, 3)
    ix.upsert_models(points())
    qid = uuid.uuid4()
    ix.upsert_questions([qid], np.ones((1, 3), dtype=np.float32))
    ix.close()

    ix = QdrantIndex(path=path)  # reopened: everything is still there
    ix.ensure_collections("fp1", 4, 3)
    assert ix.count_models() == 4
    np.testing.assert_array_equal(ix.get_question_vectors([qid])[qid], np.ones(3))
    ix.ensure_collections("fp2", 4, 3)  # another encoder: its own, empty collections
    assert ix.count_models() == 0
    with pytest.raises(RuntimeError, match="4-d"):
        ix.ensure_collections("fp1", 8, 3)
    ix.ensure_collections("fp1", 4, 3)
    ix.reset()
    assert ix.count_models() == 0 and ix.get_question_vectors([qid]) == {}
    with pytest.raises(ValueError, match="expects 4"):
        ix.upsert_models([ModelPoint(uuid.uuid4(), np.zeros(5, dtype=np.float32))])
    ix.close()
