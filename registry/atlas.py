"""Atlas use case: a 2-D map of every embedded model, with clusters, cached per encoder and registry state.

The projection (scikit-learn: by default t-SNE up to 300 models and Isomap above, as t-SNE's cost grows
too fast for a map recomputed after each registration; t-SNE, Isomap or PCA on request) and the
clusters (k-means on the embeddings themselves, not on the map) are computed once per encoder
fingerprint, method and exact set of vectors: the cache key hashes the ids and vector bytes, so
registering or refining a model gives a new map, while metadata edits (names, prices, status) are read
fresh on every call at no projection cost.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, Isomap
from threadpoolctl import threadpool_limits

from registry import repositories as repo
from registry.schemas import Status
from registry.services.context import Context

Method = Literal["tsne", "isomap", "pca"]
MethodChoice = Literal["auto", "tsne", "isomap", "pca"]
TSNE_MAX = 300  # `auto` uses t-SNE up to this many models, Isomap above (1,000 models: ~0.6 s vs ~10 s)


class AtlasPoint(BaseModel):
    id: str
    name: str
    provider: str | None
    family: str | None
    params_b: float | None
    context_window: int | None
    input_price: float | None
    output_price: float | None
    license: str | None
    status: Status
    n_evaluations: int
    x: float
    y: float
    cluster: str = Field(description="k-means cluster of the embedding (c1, c2, ...)")


class AtlasRead(BaseModel):
    fingerprint: str
    method: Method = Field(description="the projection used (`auto` resolved)")
    state: str = Field(description="hash of the embedded models' ids and vectors the map was computed from")
    cached: bool = Field(description="true when the projection came from the cache (no recomputation)")
    compute_ms: float = Field(description="projection + clustering time when it was computed")
    models_without_embedding: int
    points: list[AtlasPoint]


@dataclass(frozen=True)
class Layout:
    xy: np.ndarray  # (N, 2)
    clusters: np.ndarray  # (N,) int
    compute_ms: float


class AtlasCache:
    """The last few layouts, by state key (thread-safe; one per app)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[str, Layout] = OrderedDict()
        self._lock = threading.Lock()
        self.computations = 0  # layouts computed so far: tests and the benchmark read it

    def get(self, key: str) -> Layout | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: str, layout: Layout) -> None:
        with self._lock:
            self._items[key] = layout
            self.computations += 1
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def project(vectors: np.ndarray, method: Method, seed: int = 0) -> np.ndarray:
    """(N, E) embeddings -> (N, 2) map coordinates, deterministic for a given input."""
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2))
    x = vectors.astype(np.float64)
    if n < 5 or method == "pca":  # t-SNE and Isomap need a few neighbours; PCA works from 2 points
        k = min(2, n - 1, x.shape[1])
        out = np.zeros((n, 2))
        if k > 0:
            out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(x)
        return out
    if method == "isomap":
        return np.asarray(Isomap(n_components=2, n_neighbors=min(10, n - 1)).fit_transform(x))
    perplexity = max(1.0, min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed, max_iter=500)
    return np.asarray(tsne.fit_transform(x))


def cluster(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """k-means labels of the embeddings, k = sqrt(N / 2) clamped to [1, 12]."""
    n = len(vectors)
    k = int(min(12, max(1, round(np.sqrt(n / 2)))))
    if n < 2 or k == 1:
        return np.zeros(n, dtype=np.int64)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(vectors.astype(np.float64))
    return np.asarray(km.labels_, dtype=np.int64)


def _all_models(ctx: Context) -> dict[uuid.UUID, Any]:
    """Every registered model's shown columns, one plain SQL read: building a `ModelRead` (an ORM object
    with its tags and embedding state) per model was most of a cached map's answer."""
    with ctx.session_factory() as s:
        return {r.id: r for r in repo.model_map_rows(s)}


def resolve(method: MethodChoice, n: int) -> Method:
    if method != "auto":
        return method
    return "tsne" if n <= TSNE_MAX else "isomap"


def layout_of(vectors: np.ndarray, method: Method) -> Layout:
    """Projection and clusters, on one thread: a request shares the CPUs with others, and scikit-learn's
    OpenMP threads on a busy machine made t-SNE of 235 models take 36 s instead of about 1 s."""
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        xy = project(vectors, method)
        labels = cluster(vectors)
    return Layout(xy=xy, clusters=labels, compute_ms=(time.perf_counter() - started) * 1000)


def atlas(ctx: Context, cache: AtlasCache, method: MethodChoice = "auto") -> AtlasRead:
    """Every embedded model on a 2-D map (cached layout) with its current metadata."""
    models = _all_models(ctx)
    ids, vectors = ctx.index.scan_models(None)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), ctx.embedder.embedding_dim)
    order = sorted((str(m), i) for i, m in enumerate(ids) if m in models)  # orphan vectors are skipped
    keep = [i for _, i in order]
    ids = [ids[i] for i in keep]
    vectors = vectors[keep]
    used = resolve(method, len(ids))
    digest = hashlib.sha256(f"{ctx.embedder.fingerprint}|{used}|".encode())
    digest.update("".join(str(m) for m in ids).encode())
    digest.update(np.ascontiguousarray(vectors).tobytes())
    key = digest.hexdigest()[:16]
    layout = cache.get(key)
    cached = layout is not None
    if layout is None:
        layout = layout_of(vectors, used)
        cache.put(key, layout)
    points = []
    for i, mid in enumerate(ids):
        m = models[mid]
        points.append(
            AtlasPoint(
                id=str(m.id),
                name=m.name,
                provider=m.provider,
                family=m.family,
                params_b=m.params_b,
                context_window=m.context_window,
                input_price=m.input_price,
                output_price=m.output_price,
                license=m.license,
                status=m.status,
                n_evaluations=m.n_evaluations or 0,
                x=float(layout.xy[i, 0]),
                y=float(layout.xy[i, 1]),
                cluster=f"c{int(layout.clusters[i]) + 1}",
            )
        )
    return AtlasRead(
        fingerprint=ctx.embedder.fingerprint,
        method=used,
        state=key,
        cached=cached,
        compute_ms=round(layout.compute_ms, 2),
        models_without_embedding=len(models) - len(ids),
        points=points,
    )
