"""Inspect logs written with inspect_ai's own types and writer, read back with its own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry import importers, services
from registry.errors import QuestionConflict
from registry.importers import ImportFormatError, ImportOptions
from registry.services import Context
from tests.importers.conftest import LM_EVAL, lm_eval_questions, write_inspect_log

SAMPLES = [
    (1, "Which planet is known as the red planet?", ["C", "C"]),
    (2, "What is the boiling point of water at sea level in Celsius?", ["C", "I"]),
    (3, "Who wrote 'Pride and Prejudice'?", ["I", "I"]),
    (4, "What is 7 x 8?", ["P", "C"]),
]


@pytest.mark.parametrize("ext", ["eval", "json"])
def test_accuracy_round_trips(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"2026-11-20_trivia.{ext}"
    accuracy = write_inspect_log(path, task="trivia", model="openai/gpt-4o-mini", samples=SAMPLES)
    batch = importers.read(path, "inspect")
    assert batch.models == ["openai/gpt-4o-mini"]
    assert [q.key for q in batch.questions] == ["trivia:1", "trivia:2", "trivia:3", "trivia:4"]
    assert batch.scores.tolist() == [1.0, 0.5, 0.0, 0.75]  # epochs averaged; P = 0.5
    # the mean of what was imported equals the accuracy Inspect reports in the log (read by its reader)
    from inspect_ai.log import read_eval_log

    reported = read_eval_log(str(path), header_only=True).results
    assert reported is not None
    assert float(np.mean(batch.scores, dtype=np.float64)) == pytest.approx(
        reported.scores[0].metrics["accuracy"].value
    )
    assert accuracy == pytest.approx(0.5625)  # (1 + 0.5 + 0 + 0.75) / 4
    (prov,) = batch.provenances
    assert (prov.tool, prov.tool_version, prov.task, prov.task_version, prov.n_shot) == (
        "inspect",
        "0.3.test",
        "trivia",
        "3",
        0,
    )
    assert prov.generation["generate_config"] == {"temperature": 0.0, "max_tokens": 16}
    assert prov.generation["epochs"] == 2 and prov.generation["scorer"] == "choice"
    assert prov.run_at is not None and prov.run_at.year == 2026


def test_folder_of_logs_and_detection(tmp_path: Path) -> None:
    write_inspect_log(tmp_path / "a.eval", task="trivia", model="m/one", samples=SAMPLES)
    write_inspect_log(tmp_path / "b.eval", task="trivia", model="m/two", samples=SAMPLES[:2])
    assert importers.detect_format(tmp_path) == "inspect"
    batch = importers.read(tmp_path, "inspect", ImportOptions())
    assert sorted(batch.models) == ["m/one", "m/two"] and batch.n_evaluations == 6
    assert len(batch.questions) == 4


def test_unknown_scorer_and_bad_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "log.eval"
    write_inspect_log(path, task="trivia", model="m/one", samples=SAMPLES)
    with pytest.raises(ImportFormatError, match=r"log.eval, sample 1 epoch 1: no score from scorer 'f1'"):
        importers.read(path, "inspect", ImportOptions(metric={"*": "f1"}))
    bad = tmp_path / "broken.eval"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ImportFormatError, match=r"broken.eval: not a readable Inspect log"):
        importers.read(bad, "inspect")


def test_same_item_from_lm_eval_and_inspect_is_one_question(ctx: Context, tmp_path: Path) -> None:
    run = LM_EVAL / "seed1"
    services.import_batch(ctx, importers.read(run, "lm-eval"))
    docs = lm_eval_questions(run, "toy_mc")[:5]
    path = tmp_path / "toy.eval"
    write_inspect_log(path, task="toy_mc", model="inspect/model", samples=[(d, t, ["C"]) for d, t in docs])
    report = services.import_batch(ctx, importers.read(path, "inspect"))
    assert (report.questions_created, report.questions_existing) == (0, 5)
    # Another text under one key is refused, and nothing of that import is kept.
    clash = tmp_path / "clash.eval"
    write_inspect_log(
        clash, task="toy_mc", model="inspect/other", samples=[(0, "A different question", ["C"])]
    )
    with pytest.raises(QuestionConflict, match=r"toy_mc:0"):
        services.import_batch(ctx, importers.read(clash, "inspect"))
    assert "inspect/other" not in {m.name for m in services.list_models(ctx).items}


def test_text_keys_match_across_tools_without_ids(tmp_path: Path) -> None:
    path = tmp_path / "t.eval"
    write_inspect_log(path, task="other_name", model="m", samples=[(9, "What is  7 x 8?\n", ["C"])])
    a = importers.read(path, "inspect", ImportOptions(key_by="text"))
    b = importers.read(path, "inspect", ImportOptions(key_by="text", benchmark={"other_name": "renamed"}))
    assert a.questions[0].key == b.questions[0].key == importers.text_key("What is 7 x 8?")
