"""Checkpoint save/load round trip and fingerprint integrity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from encoder.checkpoint import CheckpointError, fingerprint, load_checkpoint, save_checkpoint
from encoder.inference import LocusEmbedder
from encoder.model import LocusModel
from tests.encoder.conftest import SMALL


def test_round_trip_gives_identical_outputs(small_model: LocusModel, tmp_path: Path) -> None:
    fp = save_checkpoint(small_model, tmp_path / "ck", extra={"note": "test"})
    loaded, fp2 = load_checkpoint(tmp_path / "ck")
    assert fp == fp2 == (tmp_path / "ck" / "FINGERPRINT").read_text().strip()
    assert loaded.cfg == small_model.cfg
    phi = torch.randn(2, 9, SMALL.query_dim)
    y = torch.ones(2, 9)
    mask = torch.ones(2, 9, dtype=torch.bool)
    assert torch.equal(loaded.encode(phi, y, mask), small_model.encode(phi, y, mask))
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["training"] == {"note": "test"}


def test_fingerprint_depends_on_weights_and_config(small_model: LocusModel) -> None:
    state = small_model.state_dict()
    fp = fingerprint(small_model.cfg, state)
    changed = {k: v.clone() for k, v in state.items()}
    name = next(iter(changed))
    changed[name] = changed[name] + 1e-3
    assert fingerprint(small_model.cfg, changed) != fp
    other = LocusModel(SMALL).cfg.__class__(**{**SMALL.to_dict(), "dropout": 0.2})
    assert fingerprint(other, state) != fp


def test_tampered_weights_are_detected(small_model: LocusModel, tmp_path: Path) -> None:
    save_checkpoint(small_model, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name] * 2
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="fingerprint mismatch"):
        load_checkpoint(tmp_path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing config\.json"):
        load_checkpoint(tmp_path)


def test_embedder_from_checkpoint_keeps_fingerprint(small_model: LocusModel, tmp_path: Path) -> None:
    fp = save_checkpoint(small_model, tmp_path)
    emb = LocusEmbedder.from_checkpoint(tmp_path)
    assert emb.fingerprint == fp
    z = emb.embed([(np.ones((3, SMALL.query_dim), np.float32), np.array([1, 0, 1], np.float32))])
    assert z.shape == (1, SMALL.embed_dim) and z.dtype == np.float32
