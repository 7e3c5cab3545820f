"""The real sentence-transformers query encoder (all-MiniLM-L6-v2 from the PyPI package), cached."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

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


def test_queries_not_persisted_stay_in_a_bounded_memory_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: every routed query was written as its own shard and kept in memory for good (a file
    per request; startup reading them all)."""
    enc = QueryEncoder(cache_dir=tmp_path)
    folder = tmp_path / "all-MiniLM-L6-v2"
    question = enc.encode(["A registered question?"])  # persisted: one shard
    shards = sorted(folder.glob("*.npz"))
    calls: list[int] = []
    real = enc._model.encode

    def counting(texts: list[str], **kw: object) -> np.ndarray:
        calls.append(len(texts))
        return np.asarray(real(texts, **kw))

    monkeypatch.setattr(enc._model, "encode", counting)
    monkeypatch.setattr("encoder.query.TRANSIENT_MAX", 2)
    a = enc.encode(["route me", "A registered question?"], persist=False)
    np.testing.assert_array_equal(a[1], question[0])  # a registered text is read from the cache
    again = enc.encode(["route me"], persist=False)
    np.testing.assert_array_equal(again[0], a[0])
    assert calls == [1]  # "route me" encoded once, the registered question never again
    enc.encode(["second", "third"], persist=False)
    assert sorted(folder.glob("*.npz")) == shards and len(enc.cache) == 1  # nothing written
    assert len(enc.transient) == 2 and text_hash("route me") not in enc.transient  # oldest dropped


def test_many_shards_are_merged_into_one_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders that collected a shard per routed query (before queries stopped being persisted) load as
    one file after the next start, with every encoding kept."""
    monkeypatch.setattr("encoder.query.COMPACT_AT", 4)
    writer = EncodingCache(tmp_path)
    rng = np.random.default_rng(0)
    vectors = {f"k{i}": rng.random(3).astype(np.float32) for i in range(6)}
    for key, vec in vectors.items():
        writer.put_many([key], vec[None, :])  # one shard each
    assert len(list(tmp_path.glob("*.npz"))) == 6
    merged = EncodingCache(tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and len(merged) == 6
    again = EncodingCache(tmp_path)
    for key, vec in vectors.items():
        np.testing.assert_array_equal(again.get(key), vec)
    few = tmp_path / "few"
    small = EncodingCache(few)
    small.put_many(["a"], np.ones((1, 3), np.float32))
    EncodingCache(few)
    assert len(list(few.glob("*.npz"))) == 1  # at or under the threshold: left as it is


def _spy(enc: QueryEncoder, monkeypatch: pytest.MonkeyPatch, before: Any) -> list[list[str]]:
    """Record every batch the model encodes; `before(texts)` runs first, in the encoding thread."""
    calls: list[list[str]] = []
    real = enc._model.encode

    def spied(texts: list[str], **kw: object) -> np.ndarray:
        calls.append(list(texts))
        before(texts)
        return np.asarray(real(texts, **kw))

    monkeypatch.setattr(enc._model, "encode", spied)
    return calls


def test_encodes_of_different_texts_run_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: one lock around the model let a server (one intra-op thread) encode one query at a
    time, leaving the other cores idle. Two new texts from two threads are now inside the model at once
    (the barrier needs both; one at a time, it times out)."""
    enc = QueryEncoder()
    enc._free = 2  # two model slots, whatever this machine has
    enc.encode(["the first encode runs alone"], persist=False)
    both = threading.Barrier(2)
    inside = threading.Event()

    def meet(texts: list[str]) -> None:
        inside.set()
        both.wait(timeout=20)

    _spy(enc, monkeypatch, meet)
    got: dict[str, np.ndarray] = {}

    def run(text: str) -> None:
        got[text] = enc.encode([text], persist=False)[0]

    threads = [threading.Thread(target=run, args=(t,)) for t in ("route this", "and route that")]
    threads[0].start()
    assert inside.wait(timeout=20)  # the first is in the model before the second asks (its own batch)
    threads[1].start()
    for th in threads:
        th.join()
    assert not both.broken and set(got) == {"route this", "and route that"}
    np.testing.assert_array_equal(got["route this"], QueryEncoder().encode(["route this"], persist=False)[0])


def test_a_text_being_encoded_is_waited_for_not_encoded_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = QueryEncoder()
    enc.encode(["warm"], persist=False)
    entered, release = threading.Event(), threading.Event()

    def hold(texts: list[str]) -> None:
        entered.set()
        assert release.wait(timeout=20)

    calls = _spy(enc, monkeypatch, hold)
    first: list[np.ndarray] = []
    th = threading.Thread(target=lambda: first.append(enc.encode(["same query"], persist=False)[0]))
    th.start()
    assert entered.wait(timeout=20)
    second: list[np.ndarray] = []
    waiter = threading.Thread(target=lambda: second.append(enc.encode(["same query", "warm"], persist=False)))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive()  # waiting for the first call's encode, not encoding it again
    release.set()
    th.join()
    waiter.join()
    assert calls == [["same query"]]
    np.testing.assert_array_equal(second[0][0], first[0])


def test_a_failed_encode_is_retried_by_whoever_waited_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = QueryEncoder()
    enc.encode(["warm"], persist=False)
    entered, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    def fail_first(texts: list[str]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            entered.set()
            assert release.wait(timeout=20)
            raise RuntimeError("the model failed")

    _spy(enc, monkeypatch, fail_first)
    errors: list[BaseException] = []

    def failing() -> None:
        try:
            enc.encode(["flaky query"], persist=False)
        except RuntimeError as exc:
            errors.append(exc)

    th = threading.Thread(target=failing)
    th.start()
    assert entered.wait(timeout=20)
    out: list[np.ndarray] = []
    waiter = threading.Thread(target=lambda: out.append(enc.encode(["flaky query"], persist=False)))
    waiter.start()
    release.set()
    th.join()
    waiter.join(timeout=30)
    assert len(errors) == 1 and not waiter.is_alive() and out[0].shape == (1, 384)
    assert len(attempts) == 2 and not enc._inflight


def _behind_a_busy_model(
    monkeypatch: pytest.MonkeyPatch, texts: list[str], fail_on: str | None = None
) -> tuple[QueryEncoder, list[list[str]], dict[str, object]]:
    """One model slot, held by a first request while `texts` arrive from one thread each and queue; then
    released. Returns the encoder, the model's batches and each text's vector (or error)."""
    enc = QueryEncoder()
    enc._free = 1
    enc.encode(["warm"], persist=False)
    entered, release = threading.Event(), threading.Event()

    def model(batch: list[str]) -> None:
        if batch == ["hold the model"]:
            entered.set()
            assert release.wait(timeout=20)
        if fail_on is not None and any(fail_on in t for t in batch):
            raise RuntimeError("the model failed on a text")

    calls = _spy(enc, monkeypatch, model)
    results: dict[str, object] = {}

    def run(text: str) -> None:
        try:
            results[text] = enc.encode([text], persist=False)[0]
        except RuntimeError as exc:
            results[text] = exc

    holder = threading.Thread(target=run, args=("hold the model",))
    holder.start()
    assert entered.wait(timeout=20)
    threads = [threading.Thread(target=run, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 20
    while len(enc._queue) < len(texts) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for th in [holder, *threads]:
        th.join()
    return enc, calls, results


def test_texts_queued_while_the_model_is_busy_share_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent requests' new texts wait in one queue; whoever gets the model next encodes them all in
    one call (a routed query alone costs ~2.8x the CPU per text of a batch of 8), each text's vector as
    encoded alone up to float rounding."""
    later = [f"queued query {i} about {topic}" for i, topic in enumerate(["maths", "law", "code"])]
    enc, calls, got = _behind_a_busy_model(monkeypatch, later)
    assert calls[0] == ["hold the model"] and sorted(calls[1]) == sorted(later) and len(calls) == 2
    alone = QueryEncoder()
    for text in ["hold the model", *later]:
        np.testing.assert_allclose(got[text], alone.encode([text], persist=False)[0], atol=1e-6)
    assert not enc._queue and not enc._inflight


def test_a_text_that_fails_fails_only_its_own_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that fails is encoded again text by text: the other requests in it get their vectors,
    the request whose text fails gets the error, and nothing is left queued or in flight."""
    texts = ["a good query", "a poison query", "another good query"]
    enc, calls, results = _behind_a_busy_model(monkeypatch, texts, fail_on="poison")
    assert isinstance(results["a poison query"], RuntimeError)
    for good in ("a good query", "another good query"):
        assert isinstance(results[good], np.ndarray)
    assert len(calls[1]) == 3  # the batch, then each text alone (the failing one again by its own
    # request, unless that request ran the batch and so already knows)
    alone = sorted(t for call in calls[2:] for t in call)
    assert all(len(call) == 1 for call in calls[2:])
    assert alone in (sorted(texts), sorted([*texts, "a poison query"]))
    assert not enc._queue and not enc._inflight
    np.testing.assert_array_equal(enc.encode(["a good query"], persist=False)[0], results["a good query"])


def test_a_bulk_encode_keeps_its_own_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """More new texts than one batch (an import) are encoded by their own call, not queued ahead of
    routed queries."""
    enc = QueryEncoder(batch_size=4)
    enc.encode(["warm"], persist=False)
    calls = _spy(enc, monkeypatch, lambda texts: None)
    texts = [f"imported question {i}" for i in range(9)]
    v = enc.encode(texts)
    assert calls == [texts] and v.shape == (9, 384) and len(enc.cache) == 9 and not enc._queue
