"""The LOCUS set encoder F (ISAB x 2 + PMA) and correctness predictor G.

Mask convention, used everywhere in this package: a boolean mask is True for a real element and
False for padding. Padded elements never act as attention keys, so the embedding of a set does not
depend on how much padding it carries, and with no positional encoding it is permutation invariant.

MAB follows the released design (post-LN, bias-free attention projections):
    H = LN(Q + MHA(Q, K)),  out = LN(H + FFN(H)),  FFN = Linear -> ReLU -> Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoder.config import LocusConfig


class MAB(nn.Module):
    """Multihead attention block: queries attend to a (masked) key set."""

    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        self.ln1 = nn.LayerNorm(width)
        self.ln2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Linear(ffn, width))

    def forward(self, x: Tensor, kv: Tensor, kv_mask: Tensor | None = None) -> Tensor:
        b, nq, d = x.shape
        nk = kv.shape[1]
        h, dh = self.heads, d // self.heads
        q = self.q(x).view(b, nq, h, dh).transpose(1, 2)  # (B, h, Nq, dh)
        k = self.k(kv).view(b, nk, h, dh).transpose(1, 2)  # (B, h, Nk, dh)
        v = self.v(kv).view(b, nk, h, dh).transpose(1, 2)  # (B, h, Nk, dh)
        attn_mask = None if kv_mask is None else kv_mask[:, None, None, :]  # (B, 1, 1, Nk)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, Nq, dh)
        a = a.transpose(1, 2).reshape(b, nq, d)  # (B, Nq, D)
        hid = self.ln1(x + self.o(a))
        return self.ln2(hid + self.ff(hid))


class ISAB(nn.Module):
    """Induced set attention: r latents summarise the set, then every element reads the summary."""

    def __init__(self, width: int, heads: int, ffn: int, inducing: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, inducing, width) * width**-0.5)
        self.mab_in = MAB(width, heads, ffn)
        self.mab_out = MAB(width, heads, ffn)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        summary = self.mab_in(self.latents.expand(x.shape[0], -1, -1), x, mask)  # (B, r, D)
        return self.mab_out(x, summary)  # (B, N, D); padded rows are junk, never used as keys


class PMA(nn.Module):
    """Pooling by multihead attention with one learned seed."""

    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.seed = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.mab = MAB(width, heads, ffn)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.mab(self.seed.expand(x.shape[0], -1, -1), x, mask)[:, 0]  # (B, D)


class SetEncoder(nn.Module):
    """F: a set of (phi, y) evaluations -> one embedding z."""

    def __init__(self, cfg: LocusConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(2 * cfg.query_dim + 1, cfg.width)
        self.blocks = nn.ModuleList(
            ISAB(cfg.width, cfg.heads, cfg.ffn, cfg.inducing) for _ in range(cfg.n_isab)
        )
        self.pool = PMA(cfg.width, cfg.heads, cfg.ffn)
        self.out = nn.Linear(cfg.width, cfg.embed_dim)

    def forward(self, phi: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every set needs at least one real (unmasked) evaluation")
        y = y.unsqueeze(-1)  # (B, N, 1)
        tokens = torch.cat([phi, y, phi * (2.0 * y - 1.0)], dim=-1)  # (B, N, 2d+1)
        x = self.inp(tokens) * mask.unsqueeze(-1)  # (B, N, D); zero padding keeps junk finite
        for block in self.blocks:
            x = block(x, mask)
        return self.out(self.pool(x, mask))  # (B, E)


class CorrectnessPredictor(nn.Module):
    """G: (z, phi) -> logit of P(correct), from features [z, u, z * u] with u = Linear(phi)."""

    def __init__(self, cfg: LocusConfig) -> None:
        super().__init__()
        self.query = nn.Linear(cfg.query_dim, cfg.embed_dim)
        self.hidden = nn.Linear(3 * cfg.embed_dim, cfg.pred_hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.pred_hidden, 1)

    def pair_logits(self, z: Tensor, phi: Tensor) -> Tensor:
        """Logits for aligned pairs: z (..., E), phi (..., d) -> (...)."""
        u = self.query(phi)
        h = F.relu(self.hidden(torch.cat([z, u, z * u], dim=-1)))
        return self.head(self.drop(h)).squeeze(-1)

    def matrix_logits(self, z: Tensor, phi: Tensor, inverse: Tensor | None = None) -> Tensor:
        """Logits for every (query, model): z (M, E), phi (Q, d) -> (Q, M), in one GEMM.

        The first layer on [z, u, z*u] splits as W_z z + W_u u + sum_k W_zu[:, k] z_k u_k, so the
        (Q, M, 3E) feature tensor is never built: the bilinear term is u @ (W_zu * z) reshaped.
        With `inverse` (E, E), z are handed-out vectors and the embeddings are z @ inverse.T; with fewer
        queries than models the inverse is folded into the queries' weights (Q*H*E*E work, not M*E*E).
        """
        e = z.shape[-1]
        if inverse is not None and phi.shape[0] >= z.shape[0]:  # the branch that reads z itself
            z, inverse = z @ inverse.T, None
        u = self.query(phi)  # (Q, E)
        w = self.hidden.weight  # (H, 3E)
        w_z, w_u, w_zu = w[:, :e], w[:, e : 2 * e], w[:, 2 * e :]
        hu = u @ w_u.T + self.hidden.bias  # (Q, H)
        if u.shape[0] < z.shape[0]:
            # Fewer queries than models (routing one query over the pool): fold the bilinear weights into
            # the queries, W_z + W_zu * u_q, a (Q*H, E) matrix rather than an (M*H, E) one built on every
            # call, so the model terms are one GEMM: z @ (W_z + W_zu u_q)^T.
            b = (w_z.unsqueeze(0) + w_zu.unsqueeze(0) * u.unsqueeze(1)).reshape(-1, e)  # (Q*H, E)
            if inverse is not None:  # z @ inverse.T @ b.T = z @ (b @ inverse).T
                b = b @ inverse
            hzz = (z @ b.T).view(z.shape[0], u.shape[0], -1).transpose(0, 1)  # (Q, M, H)
        else:
            a = (w_zu.unsqueeze(0) * z.unsqueeze(1)).reshape(-1, e)  # (M*H, E)
            hzz = (u @ a.T).view(u.shape[0], z.shape[0], -1) + (z @ w_z.T).unsqueeze(0)  # (Q, M, H)
        h = F.relu(hzz + hu.unsqueeze(1))  # (Q, M, H)
        return (h @ self.head.weight.T).squeeze(-1) + self.head.bias  # (Q, M)


class LocusModel(nn.Module):
    """Set encoder F and correctness predictor G, trained together."""

    def __init__(self, cfg: LocusConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SetEncoder(cfg)
        self.predictor = CorrectnessPredictor(cfg)

    def encode(self, phi: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """phi (B, N, d), y (B, N) in [0, 1], mask (B, N) bool -> z (B, E)."""
        return self.encoder(phi, y, mask)

    # ------------------------------------------------------------------ the stored-vector metric
    # A trained model may carry `metric`, an invertible (E, E) matrix W fitted after training
    # (`encoder.metric`): the vectors handed out (and stored, searched, compared) are v = W z, so that
    # Euclidean distance between them tracks answer disagreement; the predictor reads z = W^-1 v back, so
    # predictions are those of the unmapped model (to float rounding). Without it, v = z. The matrix is a
    # buffer only when set, so a checkpoint without one keeps its weights and fingerprint.

    @property
    def stored_metric(self) -> Tensor | None:
        """W, or None when vectors are the embeddings themselves."""
        return self._buffers.get("metric")

    def set_metric(self, w: Tensor | None) -> None:
        """Install (or with None remove) the stored-vector metric; raises ValueError unless W is a finite,
        well-conditioned (E, E) matrix."""
        e = self.cfg.embed_dim
        if w is None:
            self._buffers.pop("metric", None)
            self._buffers.pop("metric_inverse", None)
            return
        w = w.detach().to(torch.float32).contiguous()
        if w.shape != (e, e) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"metric must be a finite ({e}, {e}) matrix, got shape {tuple(w.shape)}")
        cond = float(torch.linalg.cond(w.double()))
        if not cond < 1e6:
            raise ValueError(f"metric is (nearly) singular: condition number {cond:.3g}")
        self.register_buffer("metric", w.clone())
        self.register_buffer("metric_inverse", torch.linalg.inv(w.double()).float(), persistent=False)

    def predict_vectors(self, v: Tensor, phi: Tensor) -> Tensor:
        """predict_logits on handed-out vectors v (M, E): W^-1 is folded into the predictor's first layer
        instead of mapping every vector back (at 10,000 models that map was 5 ms per routed query)."""
        inv = self._buffers.get("metric_inverse")
        if inv is None or self.training:
            return self.predict_logits(self.from_vector(v), phi)
        return self.predictor.matrix_logits(v, phi, inverse=inv)

    def to_vector(self, z: Tensor) -> Tensor:
        """Model embeddings z (B, E) -> the vectors handed out, W z (z itself without a metric)."""
        w = self._buffers.get("metric")
        return z if w is None else z @ w.T

    def from_vector(self, v: Tensor) -> Tensor:
        """Handed-out vectors (M, E) -> the model embeddings the predictor reads, W^-1 v."""
        inv = self._buffers.get("metric_inverse")
        return v if inv is None else v @ inv.T

    def predict_logits(self, z: Tensor, phi: Tensor) -> Tensor:
        """z (M, E), phi (Q, d) -> (Q, M) logits; dropout applies only in training mode."""
        if self.training:
            q, m = phi.shape[0], z.shape[0]
            return self.predictor.pair_logits(
                z.unsqueeze(0).expand(q, -1, -1), phi.unsqueeze(1).expand(-1, m, -1)
            )
        return self.predictor.matrix_logits(z, phi)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
