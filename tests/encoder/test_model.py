"""The maths of the set encoder and predictor: invariances, determinism, and that it can learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from encoder.config import LocusConfig
from encoder.model import LocusModel
from tests.encoder.conftest import SMALL


def _batch(b: int = 3, n: int = 20, d: int = SMALL.query_dim, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(b, n, d, generator=g)
    y = (torch.rand(b, n, generator=g) < 0.5).float()
    mask = torch.ones(b, n, dtype=torch.bool)
    return phi, y, mask


def test_permutation_invariance(small_model: LocusModel) -> None:
    phi, y, mask = _batch()
    z = small_model.encode(phi, y, mask)
    perm = torch.randperm(phi.shape[1], generator=torch.Generator().manual_seed(1))
    z_perm = small_model.encode(phi[:, perm], y[:, perm], mask[:, perm])
    assert torch.allclose(z, z_perm, atol=1e-5)


def test_padding_invariance(small_model: LocusModel) -> None:
    phi, y, mask = _batch(b=1, n=12)
    z = small_model.encode(phi, y, mask)
    pad = 30
    phi_p = torch.cat([phi, 100 * torch.randn(1, pad, phi.shape[2])], dim=1)  # junk in the padding
    y_p = torch.cat([y, torch.ones(1, pad)], dim=1)
    mask_p = torch.cat([mask, torch.zeros(1, pad, dtype=torch.bool)], dim=1)
    z_p = small_model.encode(phi_p, y_p, mask_p)
    assert torch.allclose(z, z_p, atol=1e-5)


def test_sets_of_different_sizes_in_one_batch_match_alone(small_model: LocusModel) -> None:
    phi, y, mask = _batch(b=2, n=16)
    mask[1, 5:] = False
    z = small_model.encode(phi, y, mask)
    z1 = small_model.encode(phi[1:2, :5], y[1:2, :5], mask[1:2, :5])
    assert torch.allclose(z[1], z1[0], atol=1e-5)


def test_deterministic_in_eval_mode(small_model: LocusModel) -> None:
    phi, y, mask = _batch()
    assert torch.equal(small_model.encode(phi, y, mask), small_model.encode(phi, y, mask))


def test_scores_change_the_embedding_and_soft_scores_are_accepted(small_model: LocusModel) -> None:
    phi, y, mask = _batch(b=1)
    z_hard = small_model.encode(phi, y, mask)
    z_flip = small_model.encode(phi, 1 - y, mask)
    z_soft = small_model.encode(phi, torch.full_like(y, 0.5), mask)
    assert not torch.allclose(z_hard, z_flip, atol=1e-3)
    assert torch.isfinite(z_soft).all()


def test_empty_set_is_rejected(small_model: LocusModel) -> None:
    phi, y, mask = _batch(b=2)
    mask[1] = False
    with pytest.raises(ValueError, match="at least one"):
        small_model.encode(phi, y, mask)


@pytest.mark.parametrize(("models", "queries"), [(7, 11), (11, 7), (30, 1)])
def test_matrix_logits_equal_pairwise_logits(small_model: LocusModel, models: int, queries: int) -> None:
    # both branches: more queries than models (bilinear weights folded into the models) and fewer (folded
    # into the queries, the model terms in one GEMM: routing one query over a pool)
    z = torch.randn(models, SMALL.embed_dim)
    phi = torch.randn(queries, SMALL.query_dim)
    fast = small_model.predictor.matrix_logits(z, phi)  # (Q, M)
    slow = small_model.predictor.pair_logits(
        z.unsqueeze(0).expand(queries, -1, -1), phi.unsqueeze(1).expand(-1, models, -1)
    )
    assert fast.shape == (queries, models)
    assert torch.allclose(fast, slow, atol=1e-5)


@pytest.mark.parametrize(("models", "queries"), [(7, 11), (30, 1)])
def test_matrix_logits_fold_the_metric_inverse_in_both_branches(
    small_model: LocusModel, models: int, queries: int
) -> None:
    # handed-out vectors v with the inverse folded in score as the embeddings v @ inverse.T do
    v = torch.randn(models, SMALL.embed_dim)
    phi = torch.randn(queries, SMALL.query_dim)
    inverse = torch.eye(SMALL.embed_dim) + 0.3 * torch.randn(SMALL.embed_dim, SMALL.embed_dim)
    folded = small_model.predictor.matrix_logits(v, phi, inverse=inverse)
    mapped = small_model.predictor.matrix_logits(v @ inverse.T, phi)
    assert torch.allclose(folded, mapped, atol=1e-4)


def test_default_size_is_about_one_million_parameters() -> None:
    n = LocusModel(LocusConfig()).n_parameters()
    assert 500_000 < n < 1_500_000


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        LocusConfig(width=30, heads=4)


def test_overfits_one_batch() -> None:
    """Eight models with distinct planted skills: the model must learn to tell them apart."""
    torch.manual_seed(0)
    model = LocusModel(SMALL)
    g = torch.Generator().manual_seed(0)
    b, n, t, d = 8, 24, 32, SMALL.query_dim
    skill = torch.randn(b, d, generator=g)
    phi = torch.randn(b, n, d, generator=g)
    tphi = torch.randn(b, t, d, generator=g)
    y = ((phi * skill[:, None]).sum(-1) > 0).float()
    ty = ((tphi * skill[:, None]).sum(-1) > 0).float()
    mask = torch.ones(b, n, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    first = None
    for _ in range(150):
        z = model.encode(phi, y, mask)
        loss = F.binary_cross_entropy_with_logits(
            model.predictor.pair_logits(z.unsqueeze(1).expand(-1, t, -1), tphi), ty
        )
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * first
