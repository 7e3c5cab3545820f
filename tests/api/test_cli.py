"""The console script end to end on the embedded mode: migrate, keys, import, reindex, then serve the data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from encoder.checkpoint import save_checkpoint
from encoder.model import LocusModel
from registry.settings import Settings
from tests.conftest import SMALL


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


def write_source(root: Path) -> Path:
    root.mkdir()
    with (root / "questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question_id", "text", "category"])
        for i in range(6):
            w.writerow([f"tiny/{i}", f"Tiny question {i}: is {i} even?", "maths"])
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "question_id", "label"])
        for m in range(3):
            for i in range(6):
                w.writerow([f"model-{m}", f"tiny/{i}", int((i + m) % 2 == 0)])
    return root


def test_cli_flow(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"], settings) == 0
    assert main(["keys", "create", "--name", "ops", "--scopes", "admin"], settings) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("lr_")
    assert main(["keys", "create", "--name", "bad", "--scopes", "root"], settings) == 2
    assert "root" in capsys.readouterr().err

    src = write_source(tmp_path / "tiny")
    assert main(["import", str(src), "--limit-models", "2"], settings) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models_created"] == 2 and report["evaluations"] == 12 and report["questions_created"] == 6
    assert main(["reindex"], settings) == 0  # a new collection build of the serving encoder, then a switch
    reindexed = json.loads(capsys.readouterr().out)
    assert reindexed["models"] == 2 and reindexed["generation"] == 1
    assert main(["encoders", "list"], settings) == 0
    assert "serving    g1" in capsys.readouterr().out
    assert main(["train", "--steps", "5"], settings) == 2  # 2 models x 6 questions: nothing to train on
    assert "nothing to train on" in capsys.readouterr().err
    # the CLI passes --weights and --metric-steps to the job, which refuses a metric refit of 0 steps
    assert main(["train", "--weights", "serving", "--metric-steps", "0"], settings) == 2
    assert "metric_steps" in capsys.readouterr().err

    with TestClient(create_app(settings)) as client:  # the lifespan builds everything from settings
        auth = {"Authorization": f"Bearer {key}"}
        models = client.get("/v1/models", headers=auth).json()["items"]
        assert [m["name"] for m in models] == ["model-0", "model-1"]
        assert all(m["embedding"]["n_evaluations"] == 6 for m in models)
        sim = client.get(f"/v1/models/{models[0]['id']}/similar", headers=auth).json()
        assert [s["model"]["name"] for s in sim["items"]] == ["model-1"]
        keys = client.get("/v1/questions", headers=auth).json()["items"]
        assert keys[0]["key"] == "tiny/0" and keys[0]["benchmark"] == "tiny"
        assert client.get("/readyz").json()["models_needing_reindex"] == 0
