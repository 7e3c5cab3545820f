"""The real sentence-transformers query encoder (all-MiniLM-L6-v2 from the PyPI package), cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoder.query import EncodingCache, QueryEncoder, text_hash


def test_encodes_with_the_packaged_model_and_caches(tmp_path: Path) -> None:
    enc = QueryEncoder(cache_dir=tmp_path)
    assert enc.dim == 384
    texts = ["What is the capital of France?", "Integrate x^2 from 0 to 1.", "What is the capital of France?"]
    v = enc.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_array_equal(v[0], v[2])
    assert len(enc.cache) == 2  # the repeated text was encoded once
    assert np.abs(v[0] - v[1]).max() > 1e-3

    # a second encoder on the same folder reads the shards instead of re-encoding
    again = EncodingCache(tmp_path / "all-MiniLM-L6-v2")
    assert len(again) == 2
    np.testing.assert_array_equal(again.get(text_hash(texts[1])), v[1])
