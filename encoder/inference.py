"""Inference: embed models from their evaluations and score (query, model) pairs, batched, in numpy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from encoder.checkpoint import fingerprint, load_checkpoint
from encoder.model import LocusModel
from encoder.query import QueryEncoder


def pad_sets(
    sets: Sequence[tuple[np.ndarray, np.ndarray]], query_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack variable-size sets into padded tensors phi (B, N, d), y (B, N), mask (B, N)."""
    n = max(len(y) for _, y in sets)
    b = len(sets)
    phi = torch.zeros(b, n, query_dim)
    y = torch.zeros(b, n)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, (p, s) in enumerate(sets):
        k = len(s)
        phi[i, :k] = torch.from_numpy(np.asarray(p, dtype=np.float32))
        y[i, :k] = torch.from_numpy(np.asarray(s, dtype=np.float32))
        mask[i, :k] = True
    return phi, y, mask


def validate_set(phi: np.ndarray, scores: np.ndarray, query_dim: int, index: int) -> None:
    """Raise ValueError naming the set if shapes or score ranges are wrong."""
    if phi.ndim != 2 or phi.shape[1] != query_dim:
        raise ValueError(f"set {index}: phi has shape {phi.shape}, expected (n, {query_dim})")
    if scores.ndim != 1 or len(scores) != len(phi):
        raise ValueError(f"set {index}: {len(scores)} scores for {len(phi)} query encodings")
    if len(scores) == 0:
        raise ValueError(f"set {index}: no evaluations")
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise ValueError(f"set {index}: scores must lie in [0, 1]")


class LocusEmbedder:
    """A loaded LOCUS model (+ optional query encoder); satisfies `registry.ports.Embedder`."""

    def __init__(
        self,
        model: LocusModel,
        query_encoder: QueryEncoder | None = None,
        *,
        fingerprint_: str | None = None,
        # Small batches keep each block's activations (tokens x 256 floats) in the CPU cache: on 2 cores,
        # 112 x 1024 evaluations embed in ~0.6 s at 2,048 tokens per batch against ~1.2 s at 262,144.
        max_batch_tokens: int = 2048,
        threads: int | None = None,
    ) -> None:
        model.eval()
        # Intra-op threads, set in every thread that embeds: OpenMP keeps the count per calling thread, so
        # a request thread, a job thread and the main thread would otherwise sum in different orders and
        # give vectors that differ in the last bits (None: this process's count when the embedder is made).
        self.threads = threads or torch.get_num_threads()
        self.model = model
        self.query_encoder = query_encoder
        self._fingerprint = fingerprint_ or fingerprint(model.cfg, model.state_dict())
        self.max_batch_tokens = max_batch_tokens
        if query_encoder is not None and query_encoder.dim != model.cfg.query_dim:
            raise ValueError(
                f"query encoder {query_encoder.model_name!r} gives {query_encoder.dim}-d vectors, "
                f"the checkpoint expects {model.cfg.query_dim}-d ({model.cfg.query_model})"
            )

    @classmethod
    def from_checkpoint(cls, path: Path | str, query_encoder: QueryEncoder | None = None) -> LocusEmbedder:
        model, fp = load_checkpoint(path)
        return cls(model, query_encoder, fingerprint_=fp)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def embedding_dim(self) -> int:
        return self.model.cfg.embed_dim

    @property
    def query_dim(self) -> int:
        return self.model.cfg.query_dim

    @property
    def query_model(self) -> str:
        return self.model.cfg.query_model

    def encode_queries(self, texts: Sequence[str], *, persist: bool = True) -> np.ndarray:
        """(N,) texts -> (N, query_dim) float32 via the configured sentence-transformers model
        (`persist=False`: cached in memory only; see `QueryEncoder.encode`)."""
        if self.query_encoder is None:
            raise RuntimeError("this embedder was built without a query encoder")
        return self.query_encoder.encode(texts, persist=persist)

    def embed(self, sets: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Embed each (phi (n, d), scores (n,)) set -> (len(sets), embed_dim) float32."""
        if not sets:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        for i, (p, s) in enumerate(sets):
            validate_set(np.asarray(p), np.asarray(s), self.query_dim, i)
        # Batches of similar size keep padding small; each set's result is independent of batching.
        order = sorted(range(len(sets)), key=lambda i: len(sets[i][1]))
        out = np.empty((len(sets), self.embedding_dim), dtype=np.float32)
        start = 0
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while start < len(order):
                end = start + 1
                while (
                    end < len(order) and (end - start + 1) * len(sets[order[end]][1]) <= self.max_batch_tokens
                ):
                    end += 1
                idx = order[start:end]
                phi, y, mask = pad_sets([sets[i] for i in idx], self.query_dim)
                out[idx] = self.model.to_vector(self.model.encode(phi, y, mask)).numpy()
                start = end
        return out

    def predictor_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored vectors (M, E) -> W^-1 v, the embeddings the predictor reads (v itself without a metric)."""
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != self.embedding_dim:
            raise ValueError(f"vectors have shape {v.shape}, expected (M, {self.embedding_dim})")
        inv = self.model._buffers.get("metric_inverse")
        return v if inv is None else v @ inv.double().numpy().T

    def predict(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """P(correct) for every (query, model): z (M, E), phi (Q, d) -> (Q, M) float32."""
        z = np.asarray(z, dtype=np.float32)
        phi = np.asarray(phi, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.embedding_dim:
            raise ValueError(f"z has shape {z.shape}, expected (M, {self.embedding_dim})")
        if phi.ndim != 2 or phi.shape[1] != self.query_dim:
            raise ValueError(f"phi has shape {phi.shape}, expected (Q, {self.query_dim})")
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            logits = self.model.predict_vectors(torch.from_numpy(z), torch.from_numpy(phi))
            return torch.sigmoid(logits).numpy()
