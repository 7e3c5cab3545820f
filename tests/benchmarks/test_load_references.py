"""`benchmarks.load`'s reference endpoints answer the requests their phases send (a reference answering
422 to every request would be measured as a fast endpoint: its errors are counted, not its speed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from benchmarks.load import baseline_app, encoder_app, http_overhead


def test_the_minimal_encode_endpoint_encodes_the_route_phase_s_texts() -> None:
    client = TestClient(encoder_app())
    texts = ["Which model answers load query 1 abcd1234 best?", "and this"]
    r = client.post("/encode", json={"queries": texts})
    assert r.status_code == 200, r.text
    assert r.json()["norms"] == pytest.approx([1.0, 1.0], abs=1e-6)  # all-MiniLM-L6-v2 normalises them
    assert client.post("/encode", json={"texts": ["wrong field"]}).status_code == 422


def test_the_minimal_knn_endpoint_answers_the_k_nearest(tmp_path: Path) -> None:
    vectors = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], np.float32)
    np.savez(tmp_path / "v.npz", ids=np.array(["a", "b", "c", "d"]), vectors=vectors)
    r = TestClient(baseline_app(tmp_path / "v.npz")).get("/similar/0?k=2")
    assert r.status_code == 200, r.text
    assert [it["id"] for it in r.json()["items"]] == ["b", "d"]


def test_http_overhead_refuses_a_container_that_would_warm_its_caches_while_timed() -> None:
    # The app runs the warm-up its container's settings ask for, whatever settings it is given: a
    # container built with the warm-up on would time requests beside a thread reading every model.
    container = SimpleNamespace(settings=SimpleNamespace(cache_warmup=True))
    with pytest.raises(ValueError, match="cache_warmup=False"):
        http_overhead(container, None, "key", [], 1)
