"""Where fingerprint thresholds come from: the checkpoint's calibration file, else the registry's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import services
from registry.decisions import FingerprintThresholds
from registry.decisions.service import ThresholdProvider
from registry.schemas import EvaluationIn, ModelCreate, QuestionIn
from registry.services import Context


def write(path: Path, fingerprint: str) -> FingerprintThresholds:
    th = FingerprintThresholds(same=0.5, related=0.9, notes={"checkpoint_fingerprint": fingerprint})
    th.save(path)
    return th


def register(ctx: Context, n_models: int = 3, n_q: int = 20) -> None:
    services.add_questions(ctx, [QuestionIn(key=f"q{i}", text=f"What is {i} plus {i}?") for i in range(n_q)])
    for m in range(n_models):
        evals = [EvaluationIn(question=f"q{i}", score=float((i * (m + 2)) % 3 == 0)) for i in range(n_q)]
        services.register_model(ctx, ModelCreate(name=f"m{m}", evaluations=evals))


def test_calibration_file_for_this_encoder_is_used(ctx: Context, tmp_path: Path) -> None:
    th = write(tmp_path / "calibration.json", ctx.embedder.fingerprint)
    got = ThresholdProvider(tmp_path / "calibration.json").get(ctx)
    assert got is not None and got[0] == th and got[1].endswith("calibration.json")


def test_file_of_another_encoder_is_ignored_and_the_registry_calibrates(ctx: Context, tmp_path: Path) -> None:
    write(tmp_path / "calibration.json", "another-encoder")
    provider = ThresholdProvider(tmp_path / "calibration.json")
    assert provider.get(ctx) is None  # empty registry: nothing to calibrate from
    register(ctx)
    got = provider.get(ctx)
    assert got is not None
    th, source = got
    assert source.startswith("calibrated from the registry")
    assert th.n_evaluations == 10 and th.n_same_pairs == 6 and th.same <= th.related
    assert provider.get(ctx) == got  # cached while the registry does not change


@pytest.mark.parametrize("n_q", [6])
def test_too_few_evaluations_give_no_thresholds(ctx: Context, n_q: int) -> None:
    register(ctx, n_q=n_q)
    assert ThresholdProvider(None).get(ctx) is None
