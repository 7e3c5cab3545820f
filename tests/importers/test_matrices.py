"""Score matrices in each documented layout: wide CSV, RouterBench, LLMRouterBench, RouterEval."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from registry import importers, services
from registry.importers import ImportFormatError, ImportOptions
from registry.services import Context

TEXTS = ["What is 2 + 2?", "Name the capital of Peru.", "Translate 'cat' to French.", "Is 17 prime?"]
SCORES = np.array([[1, 0, 1, 1], [0, 0, 1, np.nan], [1, 1, 1, 0]], dtype=np.float64)  # (models, questions)
MODELS = ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "meta/llama-2-70b-chat"]


def _observed_mean(batch: importers.ImportBatch, model: str) -> float:
    m = batch.models.index(model)
    return float(batch.scores[batch.model_idx == m].mean(dtype=np.float64))


def test_wide_csv_with_question_file_and_with_texts_as_headers(tmp_path: Path) -> None:
    with (tmp_path / "questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question_id", "text", "category"])
        w.writerows([f"q{j}", t, "misc"] for j, t in enumerate(TEXTS))
    wide = tmp_path / "scores.csv"
    with wide.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", *[f"q{j}" for j in range(4)]])
        for name, row in zip(MODELS, SCORES, strict=True):
            w.writerow([name, *["" if np.isnan(y) else int(y) for y in row]])
    batch = importers.read(wide, "wide-csv")
    assert [q.key for q in batch.questions] == ["scores:q0", "scores:q1", "scores:q2", "scores:q3"]
    assert batch.n_evaluations == 11  # one empty cell
    for name, row in zip(MODELS, SCORES, strict=True):
        assert _observed_mean(batch, name) == pytest.approx(np.nanmean(row))

    (tmp_path / "questions.csv").unlink()
    with wide.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", *TEXTS])
        w.writerow(["m", 1, 0, 0.5, "true"])
    batch = importers.read(wide, "wide-csv")
    assert batch.questions[0].key == importers.text_key(TEXTS[0]) and batch.scores.tolist() == [1, 0, 0.5, 1]
    wide.write_text("model,What?\nm,1.5\n")
    with pytest.raises(
        ImportFormatError, match=r"scores.csv, line 2, column 'What\?': score '1.5' is outside"
    ):
        importers.read(wide, "wide-csv")


def _routerbench_rows() -> tuple[list[str], list[list[object]]]:
    header = ["sample_id", "prompt", "eval_name", "oracle_model_to_route_to"]
    for m in MODELS:
        header += [m, f"{m}|model_response", f"{m}|total_cost"]
    rows = []
    for j, text in enumerate(TEXTS):
        prompt = repr([text, "Now explain."]) if j == 3 else text  # MT-Bench turns, as a list's string form
        row: list[object] = [f"mmlu-misc.val.{j}", prompt, "mmlu-misc", MODELS[0]]
        for i in range(len(MODELS)):
            y = SCORES[i, j]
            row += [None if np.isnan(y) else float(y), f"answer {i}", 0.001 * (i + 1)]
        rows.append(row)
    return header, rows


def test_routerbench_pickle_as_its_authors_ship_it_and_csv(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    header, rows = _routerbench_rows()
    pkl = tmp_path / "routerbench_0shot.pkl"
    pd.DataFrame(rows, columns=header).to_pickle(pkl)
    with pytest.raises(ImportFormatError, match=r"pickle files can run code"):
        importers.read(pkl, "routerbench")
    batch = importers.read(pkl, "routerbench", allow_pickle=True)
    assert batch.models == MODELS
    assert (
        batch.questions[1].key == "routerbench:mmlu-misc.val.1" and batch.questions[1].category == "mmlu-misc"
    )
    assert batch.questions[3].text == f"{TEXTS[3]}\n\nNow explain."
    for name, row in zip(MODELS, SCORES, strict=True):
        assert _observed_mean(batch, name) == pytest.approx(np.nanmean(row))

    path = tmp_path / "routerbench.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(["" if v is None else v for v in r] for r in rows)
    assert importers.detect_format(path) == "routerbench"
    from_csv = importers.read(path, "routerbench")
    assert from_csv.scores.tolist() == batch.scores.tolist()


def _llmrouterbench_result(
    dataset: str, split: str, model: str, records: list[dict[str, object]]
) -> dict[str, object]:
    """What LLMRouterBench's ResultsStorage.save_result writes (data_collector/storage.py)."""
    scored = [r["score"] for r in records if r["score"] is not None]
    return {
        "performance": float(np.mean(scored)),
        "time_taken": 1.0,
        "prompt_tokens": 40,
        "completion_tokens": 12,
        "cost": 0.0,
        "counts": len(records),
        "model_name": model,
        "dataset_name": dataset,
        "split": split,
        "demo": False,
        "extra_metrics": {},
        "data_fingerprint": "abc",
        "records": records,
    }


def test_llmrouterbench_results_tree(tmp_path: Path) -> None:
    bench = tmp_path / "results" / "bench"
    for i, model in enumerate(["Qwen3-8B", "GLM-Z1-9B-0414"]):
        # the newest non-demo file wins (by the timestamp in its name); the demo run is newer still
        for stamp, bump, demo in (
            ("20250901_101010", 0.0, False),
            ("20250902_101010", 1.0, False),
            ("20250903_101010", 0.0, True),
        ):
            records: list[dict[str, object]] = [
                {
                    "index": j + 1,
                    "origin_query": t,
                    "prompt": f"Question: {t}\nAnswer:",
                    "prompt_tokens": 10,
                    "completion_tokens": 3,
                    "cost": 0.0,
                    "score": None if np.isnan(SCORES[i, j]) else float(bump if j == 0 else SCORES[i, j]),
                    "prediction": "x",
                    "ground_truth": "y",
                    "raw_output": "x",
                    "extra_fields": {},
                }
                for j, t in enumerate(TEXTS)
            ]
            d = bench / "mmlu_pro" / "test" / model
            d.mkdir(parents=True, exist_ok=True)
            doc = _llmrouterbench_result("mmlu_pro", "test", model, records) | {"demo": demo}
            (d / f"mmlu_pro-test-{model}-{stamp}.json").write_text(json.dumps(doc))
    assert importers.detect_format(tmp_path / "results") == "llmrouterbench"
    batch = importers.read(tmp_path / "results", "llmrouterbench")
    assert sorted(batch.models) == ["GLM-Z1-9B-0414", "Qwen3-8B"]
    assert batch.questions[0].key == "mmlu_pro:1" and batch.questions[0].text == TEXTS[0]
    assert batch.n_evaluations == 7  # one record was not scored (score null)
    for f in bench.rglob("*-20250902_101010.json"):
        doc = json.loads(f.read_text())
        assert _observed_mean(batch, doc["model_name"]) == pytest.approx(doc["performance"])
    assert {p.run_at.day for p in batch.provenances if p.run_at} == {2}
    bad = bench / "mmlu_pro" / "test" / "Qwen3-8B" / "mmlu_pro-test-Qwen3-8B-20250904_000000.json"
    bad.write_text(json.dumps({"records": [{"index": 1, "origin_query": "q"}]}))
    with pytest.raises(ImportFormatError, match=r"20250904_000000.json, record 1: a record needs a 'score'"):
        importers.read(bench, "llmrouterbench")


@pytest.mark.parametrize("nested", [False, True])
def test_routereval_score_and_prompt_pickles(ctx: Context, tmp_path: Path, nested: bool) -> None:
    # data/leaderboard_score/leaderboard_old.pkl + data/leaderboard_prompt/leaderboard_old_prompt.pkl, as
    # released (the archives unpack into a nested folder of the same name: both are read)
    data = tmp_path / "data"
    score_dir = data / "leaderboard_score" / ("leaderboard_score" if nested else "")
    prompt_dir = data / "leaderboard_prompt" / ("leaderboard_prompt" if nested else "")
    score_dir.mkdir(parents=True)
    prompt_dir.mkdir(parents=True)
    scores = {
        "model": MODELS,
        "data": {"arc": {"correctness": SCORES.T[:2]}, "gsm8k": {"correctness": SCORES.T[2:]}},
    }
    prompts = {"arc": np.array(TEXTS[:2]), "gsm8k": np.array(TEXTS[2:])}
    (score_dir / "leaderboard_old.pkl").write_bytes(pickle.dumps(scores))
    (prompt_dir / "leaderboard_old_prompt.pkl").write_bytes(pickle.dumps(prompts))
    assert importers.detect_format(data) == "routereval"
    assert importers.detect_format(score_dir / "leaderboard_old.pkl") == "routereval"
    batch = importers.read(data, "routereval", allow_pickle=True)
    assert [q.key for q in batch.questions] == ["arc:0", "arc:1", "gsm8k:0", "gsm8k:1"]
    assert batch.provenances[0].task == "old"
    for name, row in zip(MODELS, SCORES, strict=True):
        assert _observed_mean(batch, name) == pytest.approx(np.nanmean(row))
    one = importers.read(score_dir / "leaderboard_old.pkl", "routereval", allow_pickle=True)
    assert one.scores.tolist() == batch.scores.tolist()
    report = services.import_batch(ctx, batch)
    assert (report.models_created, report.evaluations) == (3, 11)
    prompts["gsm8k"] = np.array(TEXTS[2:3])
    (prompt_dir / "leaderboard_old_prompt.pkl").write_bytes(pickle.dumps(prompts))
    with pytest.raises(ImportFormatError, match=r"subset 'gsm8k': 2 items but 1 prompts"):
        importers.read(data, "routereval", allow_pickle=True)
    (prompt_dir / "leaderboard_old_prompt.pkl").unlink()
    with pytest.raises(
        ImportFormatError, match=r"leaderboard_old.pkl: its prompts .*leaderboard_old_prompt.pkl"
    ):
        importers.read(data, "routereval", allow_pickle=True)


def test_options_name_models_and_benchmarks(tmp_path: Path) -> None:
    wide = tmp_path / "w.csv"
    wide.write_text("model,Q one?,Q two?\nm1,1,0\nm1,0,1\n")
    with pytest.raises(ImportFormatError, match=r"scored twice"):
        importers.read(wide, "wide-csv", ImportOptions(name="x"))
