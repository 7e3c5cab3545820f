"""The stored-vector metric: vectors handed out are W z, predictions unchanged, checkpoints carry it, and
fitted on training models it makes distance track behaviour on models it never saw."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from encoder.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from encoder.geometry import geometry_report
from encoder.inference import LocusEmbedder
from encoder.metric import MetricConfig, NothingToFit, condition, fit_metric, pearson_loss
from encoder.model import LocusModel
from encoder.simulate import PoolSpec, simulate_pool
from encoder.train import prepare_source
from tests.encoder.conftest import SMALL, train_planted

E = SMALL.embed_dim


def _sets(rng: np.random.Generator, n: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (rng.normal(size=(20, SMALL.query_dim)).astype(np.float32), (rng.random(20) < 0.6).astype(np.float32))
        for _ in range(n)
    ]


def _well_conditioned(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.eye(E) + 0.3 * torch.randn(E, E, generator=g) / E**0.5


def test_vectors_are_mapped_and_predictions_do_not_change(small_model: LocusModel) -> None:
    rng = np.random.default_rng(0)
    sets = _sets(rng)
    phi = rng.normal(size=(7, SMALL.query_dim)).astype(np.float32)
    plain = LocusEmbedder(small_model)
    z = plain.embed(sets)
    p = plain.predict(z, phi)
    w = _well_conditioned(1)
    small_model.set_metric(w)
    mapped = LocusEmbedder(small_model)
    v = mapped.embed(sets)
    np.testing.assert_allclose(v, z @ w.numpy().T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mapped.predict(v, phi), p, atol=1e-5)
    # fewer queries than models: the predictor folds W^-1 into the queries' weights instead
    np.testing.assert_allclose(mapped.predict(v, phi[:2]), p[:2], atol=1e-5)
    # portfolios read the predictor's space: the stored vectors mapped back to z (identity without W)
    np.testing.assert_allclose(mapped.predictor_space(v), z, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="expected"):
        mapped.predictor_space(v[:, :3])
    assert mapped.fingerprint != plain.fingerprint  # vectors of the two never mix in the registry
    small_model.set_metric(None)
    assert LocusEmbedder(small_model).fingerprint == plain.fingerprint
    np.testing.assert_array_equal(plain.predictor_space(z), z.astype(np.float64))  # no metric: identity
    assert "metric" not in small_model.state_dict()


def test_a_singular_or_misshapen_metric_is_refused(small_model: LocusModel) -> None:
    with pytest.raises(ValueError, match="singular"):
        small_model.set_metric(torch.zeros(E, E))
    with pytest.raises(ValueError, match=f"\\({E}, {E}\\)"):
        small_model.set_metric(torch.eye(E + 1))
    assert small_model.stored_metric is None


def test_checkpoints_carry_the_metric(tmp_path: Path, small_model: LocusModel) -> None:
    fp_plain = save_checkpoint(small_model, tmp_path / "plain")
    small_model.set_metric(_well_conditioned(2))
    fp = save_checkpoint(small_model, tmp_path / "mapped")
    loaded, fp_loaded = load_checkpoint(tmp_path / "mapped")
    assert fp_loaded == fp != fp_plain
    assert loaded.stored_metric is not None and torch.equal(loaded.stored_metric, small_model.stored_metric)
    plain, fp_again = load_checkpoint(tmp_path / "plain")
    assert plain.stored_metric is None and fp_again == fp_plain
    # a checkpoint whose metric cannot be inverted is refused, not loaded with garbage predictions
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "mapped" / "model.safetensors"))
    state["metric"] = torch.zeros(E, E)
    save_file(state, str(tmp_path / "mapped" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="singular"):
        load_checkpoint(tmp_path / "mapped")


def test_condition_raises_small_singular_values_only() -> None:
    w = torch.diag(torch.tensor([4.0, 1.0, 1e-5]))
    got = condition(w, 1e-3)
    assert torch.allclose(torch.linalg.svdvals(got), torch.tensor([4.0, 1.0, 4e-3]))


def test_pearson_loss_is_zero_for_an_affine_fit_and_ignores_unknown_pairs() -> None:
    v = torch.tensor([[0.0], [1.0], [3.0]])
    d = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    assert pearson_loss(v, 0.5 * d + 0.1).item() == pytest.approx(0.0, abs=1e-5)
    t = torch.full((3, 3), float("nan"))
    t[0, 1] = 0.3
    assert pearson_loss(v, t).item() == 0.0  # fewer than three known pairs: nothing to fit


@pytest.fixture(scope="module")
def planted_heldout() -> tuple:
    pool = simulate_pool(
        PoolSpec(n_models=32, n_questions=500, n_categories=4, query_dim=SMALL.query_dim, missing=0.0, seed=5)
    )
    ts = prepare_source(pool.to_source(), pool.phi, split_seed=0, holdout_fraction=0.25)
    return ts, pool, train_planted(ts)  # the LOCUS loss alone


def test_the_fitted_metric_tracks_behaviour_of_models_it_never_saw(planted_heldout: tuple) -> None:
    """Fitted on the training models only, the metric raises Pearson(distance, test disagreement) on pairs
    with a held-out model, and brings two samples of one model closer relative to distinct models; it is
    deterministic for a seed, and routing predictions stay those of the unmapped model."""
    ts, pool, model = planted_heldout
    focus = np.flatnonzero(~ts.train_models)

    def report() -> dict:
        emb = LocusEmbedder(model)
        return geometry_report(
            emb.embed, pool.labels, ts.phi, ts.split.train, ts.split.test, k=64, seed=0, focus=focus
        )

    model.set_metric(None)
    before = report()
    cfg = MetricConfig(draws=4, min_set=32, max_set=256, steps=150)
    w, info = fit_metric(model, [ts], cfg, seed=0)
    w_again, _ = fit_metric(model, [ts], cfg, seed=0)
    assert torch.equal(w, w_again)
    assert info["loss_last"] < info["loss_first"]
    assert float(torch.linalg.cond(w.double())) < 1.01 / cfg.min_singular  # W^-1 stays tame
    phi = ts.phi[ts.split.test]
    sets = [(ts.phi[ts.split.train[:64]], pool.labels[m, ts.split.train[:64]]) for m in range(4)]
    p_before = LocusEmbedder(model).predict(LocusEmbedder(model).embed(sets), phi)
    model.set_metric(w)
    after = report()
    p_after = LocusEmbedder(model).predict(LocusEmbedder(model).embed(sets), phi)
    model.set_metric(None)
    np.testing.assert_allclose(p_after, p_before, atol=1e-4)
    assert after["pearson"] > before["pearson"] + 0.02, (before["pearson"], after["pearson"])
    assert after["same_tpr"] >= before["same_tpr"], (before["same_tpr"], after["same_tpr"])


def test_sources_without_two_training_models_are_left_out(
    planted_heldout: tuple, small_model: LocusModel
) -> None:
    ts = planted_heldout[0]
    lone = dataclasses.replace(ts, train_models=np.eye(len(ts.train_models), dtype=bool)[0])  # one model
    with pytest.raises(NothingToFit, match="two training models"):
        fit_metric(small_model, [lone], MetricConfig(draws=2, steps=2), seed=0)
    cfg = MetricConfig(draws=2, min_set=32, max_set=64, steps=3)
    w, _ = fit_metric(small_model, [ts, lone], cfg, seed=0)
    assert torch.equal(w, fit_metric(small_model, [ts], cfg, seed=0)[0])
