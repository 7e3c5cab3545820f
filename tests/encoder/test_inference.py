"""LocusEmbedder: batching must not change results; bad sets get errors naming the set."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from encoder.config import LocusConfig
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from tests.encoder.conftest import SMALL


def _sets(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(n, SMALL.query_dim)).astype(np.float32), (rng.random(n) < 0.5).astype(np.float32))
        for n in sizes
    ]


def test_batched_embedding_matches_one_at_a_time(small_model: LocusModel) -> None:
    sets = _sets([5, 40, 12, 33, 1])
    emb = LocusEmbedder(small_model, max_batch_tokens=64)  # forces several batches
    together = emb.embed(sets)
    alone = np.concatenate([emb.embed([s]) for s in sets])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_order_of_evaluations_does_not_matter(small_model: LocusModel) -> None:
    ((phi, y),) = _sets([50])
    perm = np.random.default_rng(3).permutation(50)
    emb = LocusEmbedder(small_model)
    np.testing.assert_allclose(emb.embed([(phi, y)]), emb.embed([(phi[perm], y[perm])]), atol=1e-5)


def test_predict_shape_and_range(small_model: LocusModel) -> None:
    emb = LocusEmbedder(small_model)
    z = emb.embed(_sets([10, 20, 30]))
    p = emb.predict(z, np.random.default_rng(0).normal(size=(7, SMALL.query_dim)))
    assert p.shape == (7, 3) and p.dtype == np.float32
    assert ((p > 0) & (p < 1)).all()


@pytest.mark.parametrize(
    ("phi", "scores", "message"),
    [
        (np.zeros((3, SMALL.query_dim + 1)), np.zeros(3), "expected"),
        (np.zeros((3, SMALL.query_dim)), np.zeros(2), "2 scores for 3"),
        (np.zeros((0, SMALL.query_dim)), np.zeros(0), "no evaluations"),
        (np.zeros((2, SMALL.query_dim)), np.array([0.5, 1.5]), r"\[0, 1\]"),
    ],
)
def test_bad_sets_name_the_set(small_model: LocusModel, phi, scores, message) -> None:
    emb = LocusEmbedder(small_model)
    good = _sets([4])[0]
    with pytest.raises(ValueError, match=f"set 1: .*{message}"):
        emb.embed([good, (phi, scores)])


def test_embedding_does_not_depend_on_the_calling_threads_count() -> None:
    """OpenMP keeps the thread count per calling thread: a request or job thread must embed with the
    embedder's count, or its vectors differ in the last bits from the main thread's (test_processes)."""
    torch.manual_seed(0)
    emb = LocusEmbedder(LocusModel(LocusConfig()), threads=1)
    rng = np.random.default_rng(0)
    sets = [
        (rng.normal(size=(600, emb.query_dim)).astype(np.float32), rng.integers(0, 2, 600).astype(np.float32))
    ]
    here = emb.embed(sets)
    seen: dict[str, object] = {}

    def other() -> None:
        torch.set_num_threads(2)  # what a fresh thread of a multi-core process may run with
        seen["vector"] = emb.embed(sets)
        seen["threads"] = torch.get_num_threads()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["threads"] == 1
    np.testing.assert_array_equal(seen["vector"], here)
