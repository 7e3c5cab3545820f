"""`locus-registry export litellm` end to end on the embedded mode: the file it writes loads into LiteLLM."""

from __future__ import annotations

import json
from pathlib import Path

import litellm
import pytest

from api.cli import main
from registry.settings import Settings
from tests.api.test_cli import settings, write_source

__all__ = ["settings"]


def test_cli_export_writes_a_router_config(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(write_source(tmp_path / "tiny"))], settings) == 0
    capsys.readouterr()
    out = tmp_path / "litellm.json"
    assert main(["export", "litellm", "--out", str(out), "--k", "2"], settings) == 0
    config = json.loads(out.read_text())
    assert sorted(d["model_name"] for d in config["model_list"]) == ["model-0", "model-1", "model-2"]
    # No deployment parameters in the registry: an OpenAI-compatible deployment named after the model.
    assert all(d["litellm_params"]["model"] == f"openai/{d['model_name']}" for d in config["model_list"])
    assert {k for entry in config["fallbacks"] for k in entry} >= {"model-0", "locus-auto"}
    assert litellm.Router(**config).model_names

    assert main(["export", "litellm", "--format", "proxy"], settings) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"model_list", "router_settings"}
    assert main(["export", "litellm", "--provider", "nobody"], settings) == 2
    assert "nothing to export" in capsys.readouterr().err
