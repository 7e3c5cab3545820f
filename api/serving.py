"""Which encoder answers a request: the serving snapshot, re-read from SQL at most once a second.

Every request gets one `Container` bound to one (encoder, collections) pair, read once when the request
starts, so a promotion, rollback or reindex switch never gives it a mix. All replicas read the same
SQL row, so within `SERVING_TTL_S` of a switch every process answers with the new encoder; a request
that started before it finishes on the old one (whose collections a switch keeps for that long).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

from api.deps import Container
from encoder.checkpoint import load_checkpoint
from encoder.inference import LocusEmbedder
from encoder.query import QueryEncoder
from registry import repositories_encoders as enc_repo
from registry.ports import Embedder
from registry.services.encoders import SERVING_TTL_S

log = logging.getLogger(__name__)


class EmbedderCache:
    """Loads encoder checkpoints by path, sharing the registry's query encoder (one per process)."""

    def __init__(self, serving: Embedder, query_encoder: QueryEncoder | None) -> None:
        self._by_fp: dict[str, Embedder] = {serving.fingerprint: serving}
        self._query = query_encoder
        self._threads = getattr(serving, "threads", None)
        self._lock = threading.Lock()

    def __call__(self, path: str) -> Embedder:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"no checkpoint folder at {path}")
        model, fp = load_checkpoint(path)
        with self._lock:
            known = self._by_fp.get(fp)
            if known is not None:
                return known
            emb = LocusEmbedder(model, self._query, fingerprint_=fp, threads=self._threads)
            self._by_fp[fp] = emb
            return emb

    def get(self, fingerprint: str) -> Embedder | None:
        with self._lock:
            return self._by_fp.get(fingerprint)


class ServingSwitch:
    """Resolves the serving encoder for each request (cached for `ttl` seconds)."""

    def __init__(self, base: Container, loader: EmbedderCache, *, ttl: float = SERVING_TTL_S) -> None:
        self._base = base
        self.loader = loader
        self._ttl = ttl
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._current = base
        self._checked = -float("inf")

    def fresh(self) -> Container | None:
        """The container in service when it was checked less than `ttl` ago (no I/O), else None."""
        return self._current if time.monotonic() - self._checked < self._ttl else None

    def current(self) -> Container:
        if time.monotonic() - self._checked < self._ttl:
            return self._current
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self._ttl:
                return self._current
            with self._base.session_factory() as s:
                key = enc_repo.serving_key(s)
            if key is not None and key[:2] != self._key:
                fp, gen, path = key
                emb = self.loader.get(fp) or self.loader(path)
                index = self._base.index.view(fp, emb.embedding_dim, emb.query_dim, gen)
                self._current = replace(self._base, index=index, embedder=emb)
                log.info("serving encoder %s generation %d", fp, gen)
                self._key = (fp, gen)
            self._checked = now
            return self._current

    def refresh(self) -> None:
        """Re-read the serving row on the next request (after this process switched)."""
        with self._lock:
            self._checked = -float("inf")
