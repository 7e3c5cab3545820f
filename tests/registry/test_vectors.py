"""The vector adapters (qdrant-client, Qdrant Edge): filters, distances, persistence across reopen,
collections tied to a fingerprint, serving aliases. Every test runs on both."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from registry.ports import ModelFilter, ModelPoint, VectorIndex
from registry.vectors import QdrantIndex, to_filter
from registry.vectors_edge import EdgeIndex, to_edge_filter

BACKENDS = {"qdrant-local": QdrantIndex, "qdrant-edge": EdgeIndex}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> type:
    return BACKENDS[request.param]  # type: ignore[no-any-return]


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
def idx(tmp_path: Path, backend: type) -> VectorIndex:
    ix = backend(path=str(tmp_path / "q"))
    ix.ensure_collections("fp1", 4, 3)
    ix.upsert_models(points())
    return ix  # type: ignore[no-any-return]


def names(hits: list) -> list[int]:  # type: ignore[type-arg]
    return [h.id.int for h in hits]


def test_search_returns_euclidean_distances(idx: VectorIndex) -> None:
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
def test_filters(idx: VectorIndex, flt: ModelFilter, expected: list[int]) -> None:
    assert names(idx.search_models(np.zeros(4, dtype=np.float32), 10, flt)) == expected
    ids, vecs = idx.scan_models(flt)
    assert sorted(i.int for i in ids) == expected and vecs.shape == (len(expected), 4)


def test_empty_filter_is_none() -> None:
    assert to_filter(None) is None and to_filter(ModelFilter()) is None
    assert to_edge_filter(None) is None and to_edge_filter(ModelFilter()) is None


def test_persistence_fingerprints_and_reset(tmp_path: Path, backend: type) -> None:
    path = str(tmp_path / "q")
    ix = backend(path=path)
    ix.ensure_collections("fp1", 4, 3)
    ix.upsert_models(points())
    qid = uuid.uuid4()
    ix.upsert_questions([qid], np.ones((1, 3), dtype=np.float32))
    ix.close()

    ix = backend(path=path)  # reopened: everything is still there
    ix.ensure_collections("fp1", 4, 3)
    assert ix.count_models() == 4
    np.testing.assert_array_equal(ix.get_question_vectors([qid])[qid], np.ones(3))
    ix.ensure_collections("fp2", 4, 3)  # another encoder: its own, empty collections
    assert ix.count_models() == 0
    with pytest.raises(RuntimeError, match=r"models_fp1.* 8-d"):
        ix.ensure_collections("fp1", 8, 3)
    ix.ensure_collections("fp1", 4, 3)
    ix.reset()
    assert ix.count_models() == 0 and ix.get_question_vectors([qid]) == {}
    with pytest.raises(ValueError, match="expects 4"):
        ix.upsert_models([ModelPoint(uuid.uuid4(), np.zeros(5, dtype=np.float32))])
    ix.close()


def test_generations_views_and_the_serving_alias(tmp_path: Path, backend: type) -> None:
    """A rebuild goes into the next generation beside the one in service; the serving alias moves both
    collections at once and survives a reopen; the old generation can then be dropped, never the bound
    one."""
    path = str(tmp_path / "q")
    ix = backend(path=path)
    ix.ensure_collections("fp1", 4, 3)
    assert ix.serving_alias() is None
    ix.set_serving_alias()
    assert ix.serving_alias() == "models_fp1"
    ix.upsert_models(points()[:2])
    nxt = ix.view("fp1", 4, 3, generation=1)  # the rebuild: same storage, its own collections
    nxt.upsert_models(points())
    assert (ix.count_models(), nxt.count_models()) == (2, 4)
    nxt.set_serving_alias()
    assert ix.serving_alias() == "models_fp1_g1"
    with pytest.raises(RuntimeError, match="bound"):
        nxt.drop_collections("fp1", 1)
    nxt.drop_collections("fp1", 0)
    nxt.close()  # a view never closes the storage it shares
    assert names(nxt.search_models(np.zeros(4, dtype=np.float32), 1)) == [1]
    ix.close()
    again = backend(path=path)
    assert again.serving_alias() == "models_fp1_g1"
    again.ensure_collections("fp1", 4, 3, generation=1)
    assert again.count_models() == 4
    again.ensure_collections("fp1", 4, 3)  # the dropped generation comes back empty
    assert again.count_models() == 0
    again.close()


def test_a_second_opener_of_an_edge_folder_is_told_it_is_in_use(tmp_path: Path) -> None:
    first = EdgeIndex(path=str(tmp_path / "q"))
    first.ensure_collections("fp1", 4, 3)
    with pytest.raises(RuntimeError, match="in use by another process"):
        EdgeIndex(path=str(tmp_path / "q")).ensure_collections("fp1", 4, 3)
    first.close()
    again = EdgeIndex(path=str(tmp_path / "q"))  # free once the first closed it
    again.ensure_collections("fp1", 4, 3)
    again.close()


def test_edge_keeps_every_acknowledged_write_through_a_hard_kill(tmp_path: Path) -> None:
    """A process that upserts, switches the alias and dies without closing (as under SIGKILL): a new
    process finds every point and the alias (Edge's write-ahead log)."""
    import subprocess
    import sys

    path = str(tmp_path / "q")
    code = (
        "import os, uuid, numpy as np\n"
        "from registry.ports import ModelPoint\n"
        "from registry.vectors_edge import EdgeIndex\n"
        f"ix = EdgeIndex(path={path!r})\n"
        "ix.ensure_collections('fp1', 4, 3, generation=2)\n"
        "ix.upsert_models([ModelPoint(uuid.UUID(int=i + 1), np.full(4, i, np.float32), {'status': 'active'})"
        " for i in range(100)])\n"
        "ix.set_serving_alias()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    ix = EdgeIndex(path=path)
    assert ix.serving_alias() == "models_fp1_g2"
    ix.ensure_collections("fp1", 4, 3, generation=2)
    assert ix.count_models() == 100
    assert names(ix.search_models(np.full(4, 7, np.float32), 1, ModelFilter(statuses=("active",)))) == [8]
    ix.close()
