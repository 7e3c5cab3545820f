"""`locus-registry import PATH --format F` end to end on the embedded mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli import main
from encoder.checkpoint import save_checkpoint
from encoder.model import LocusModel
from registry.settings import Settings
from tests.conftest import SMALL
from tests.importers.conftest import LM_EVAL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    ckpt = tmp_path / "ckpt"
    save_checkpoint(LocusModel(SMALL), ckpt)
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'db' / 'registry.db'}",
        qdrant_path=str(tmp_path / "qdrant"),
        encoder_checkpoint=ckpt,
        query_cache_dir=Path.home() / ".cache" / "locus-registry" / "query",
    )


def test_cli_imports_lm_eval_idempotently(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "import",
        str(LM_EVAL / "seed1"),
        "--format",
        "lm-eval",
        "--metric",
        "toy_mc=acc_norm",
        "--model-name",
        "my-model",
    ]
    assert main(args, settings) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["models_created"], first["evaluations"], first["sources_created"]) == (1, 60, 3)
    assert main(args, settings) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["models_updated"], again["sources_created"], again["sources_existing"]) == (1, 0, 3)
    # Detected format; a bad option is an error message, not a traceback.
    assert main(["import", str(LM_EVAL / "seed2"), "--benchmark", "toy_mc"], settings) == 2
    assert "expected TASK=NAME" in capsys.readouterr().err
    assert main(["import", str(LM_EVAL / "seed2"), "--metric", "bleu"], settings) == 2
    assert "no metric 'bleu'" in capsys.readouterr().err
