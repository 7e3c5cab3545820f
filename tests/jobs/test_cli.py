"""`locus-registry import` runs as a job (recorded, with progress); `locus-registry jobs ...` reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli import main
from encoder.checkpoint import save_checkpoint
from encoder.model import LocusModel
from registry.settings import Settings
from tests.conftest import SMALL
from tests.jobs.data import write_normalised


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


def test_import_is_a_job_and_jobs_commands_read_it(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_normalised(tmp_path / "src", models=5, questions=12, seed=9)
    assert main(["import", str(src), "--name", "cli"], settings) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["models_created"] == 5 and report["evaluations"] == 60
    assert "embeddings" in out.err  # the progress bars

    assert main(["jobs", "list"], settings) == 0
    listed = capsys.readouterr()
    job_id = listed.out.split()[0]
    assert "import" in listed.out and "succeeded" in listed.out and "1 of 1 jobs" in listed.err

    assert main(["jobs", "show", job_id], settings) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["created_by"] == "cli" and shown["params"]["local"] is True
    assert shown["result"] == report
    assert main(["jobs", "wait", job_id], settings) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "succeeded"
    assert main(["jobs", "cancel", job_id], settings) == 0
    assert "succeeded" in capsys.readouterr().out  # finished jobs are left as they are

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "questions.csv").write_text("question_id,text\nq1,hello\n")
    (bad / "labels.csv").write_text("model,question_id,label\nm,q9,1\n")
    assert main(["import", str(bad)], settings) == 2
    err = capsys.readouterr().err
    assert "ImportFormatError" in err and "q9" in err
    assert main(["jobs", "list", "--state", "failed"], settings) == 0
    assert "failed" in capsys.readouterr().out
    assert main(["jobs", "wait", "00000000-0000-0000-0000-000000000000"], settings) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["jobs", "show", "nope"], settings)
