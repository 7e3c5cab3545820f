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
        row: list[object] = [f"mmlu-misc.val.{j}", text, "mmlu-misc", MODELS[0]]
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


def test_llmrouterbench_results_tree(tmp_path: Path) -> None:
    bench = tmp_path / "results" / "bench"
    for i, model in enumerate(["Qwen3-8B", "GLM-Z1-9B-0414"]):
        for stamp, bump in (("20250901_101010", 0.0), ("20250902_101010", 1.0)):  # the newest file wins
            records = [
                {
                    "index": j + 1,
                    "origin_query": t,
                    "prompt": f"Question: {t}\nAnswer:",
                    "prediction": "x",
                    "ground_truth": "y",
                    "score": float(bump if j == 0 else SCORES[i, j] if not np.isnan(SCORES[i, j]) else 0),
                    "prompt_tokens": 10,
                    "completion_tokens": 3,
                    "cost": 0.0,
                }
                for j, t in enumerate(TEXTS)
            ]
            perf = float(np.mean([r["score"] for r in records]))
            d = bench / "mmlu_pro" / "test" / model
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{stamp}.json").write_text(
                json.dumps({"performance": perf, "counts": 4, "records": records})
            )
    batch = importers.read(bench, "llmrouterbench")
    assert sorted(batch.models) == ["GLM-Z1-9B-0414", "Qwen3-8B"]
    assert batch.questions[0].key == "mmlu_pro:1" and batch.questions[0].text == TEXTS[0]
    for f in bench.rglob("20250902_101010.json"):
        doc = json.loads(f.read_text())
        assert _observed_mean(batch, f.parent.name) == pytest.approx(doc["performance"])
    assert {p.run_at.day for p in batch.provenances if p.run_at} == {2}
    bad = bench / "mmlu_pro" / "test" / "Qwen3-8B" / "20250903_000000.json"
    bad.write_text(json.dumps({"records": [{"index": 1, "origin_query": "q"}]}))
    with pytest.raises(ImportFormatError, match=r"20250903_000000.json, record 1: a record needs a 'score'"):
        importers.read(bench, "llmrouterbench")


def test_routereval_score_and_prompt_pickles(ctx: Context, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "leaderboard_score").mkdir(parents=True)
    (data / "leaderboard_prompt").mkdir()
    scores = {
        "models": MODELS,
        "data": {"arc": {"correctness": SCORES.T[:2]}, "gsm8k": {"correctness": SCORES.T[2:]}},
    }
    prompts = {"arc": np.array(TEXTS[:2]), "gsm8k": np.array(TEXTS[2:])}
    (data / "leaderboard_score" / "old.pkl").write_bytes(pickle.dumps(scores))
    (data / "leaderboard_prompt" / "old.pkl").write_bytes(pickle.dumps(prompts))
    assert importers.detect_format(data) == "routereval"
    batch = importers.read(data, "routereval", allow_pickle=True)
    assert [q.key for q in batch.questions] == ["arc:0", "arc:1", "gsm8k:0", "gsm8k:1"]
    for name, row in zip(MODELS, SCORES, strict=True):
        assert _observed_mean(batch, name) == pytest.approx(np.nanmean(row))
    report = services.import_batch(ctx, batch)
    assert (report.models_created, report.evaluations) == (3, 11)
    prompts["gsm8k"] = np.array(TEXTS[2:3])
    (data / "leaderboard_prompt" / "old.pkl").write_bytes(pickle.dumps(prompts))
    with pytest.raises(ImportFormatError, match=r"subset 'gsm8k': 2 items but 1 prompts"):
        importers.read(data, "routereval", allow_pickle=True)


def test_options_name_models_and_benchmarks(tmp_path: Path) -> None:
    wide = tmp_path / "w.csv"
    wide.write_text("model,Q one?,Q two?\nm1,1,0\nm1,0,1\n")
    with pytest.raises(ImportFormatError, match=r"scored twice"):
        importers.read(wide, "wide-csv", ImportOptions(name="x"))
