"""Fixtures for the importers: lm-eval outputs made by the real tool (committed), Inspect logs written
with inspect_ai's own types and writer, and small files in each matrix layout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.api.conftest import admin, client, writer  # noqa: F401  (API fixtures shared with tests/api)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LM_EVAL = FIXTURES / "lm_eval"


def lm_eval_results(run: Path) -> dict[str, Any]:
    """The results JSON lm-eval wrote for one run."""
    data: dict[str, Any] = json.loads(next(run.glob("results_*.json")).read_text())
    return data


def lm_eval_questions(run: Path, task: str) -> list[tuple[int, str]]:
    """(doc_id, question text) of a task's samples, first filter only."""
    out: dict[int, str] = {}
    for line in next(run.glob(f"samples_{task}_*.jsonl")).read_text().splitlines():
        s = json.loads(line)
        out.setdefault(s["doc_id"], f"Question: {s['doc']['question']}\nAnswer:")
    return sorted(out.items())


def write_inspect_log(
    path: Path,
    *,
    task: str,
    model: str,
    samples: Sequence[tuple[int | str, str, Sequence[str | float]]],
    scorer: str = "choice",
) -> float:
    """Write an Inspect log with inspect_ai's own types and writer; returns the log's accuracy.

    `samples` are (id, input text, one score value per epoch), e.g. (1, "2+2?", ["C", "I"]).
    """
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalSample,
        EvalScore,
        EvalSpec,
        EvalStats,
        write_eval_log,
    )
    from inspect_ai.model import GenerateConfig, ModelOutput
    from inspect_ai.scorer import SampleScore, Score, mean_score
    from inspect_ai.scorer import accuracy as inspect_accuracy

    epochs = max(len(v) for _, _, v in samples)
    rows = []
    reduce_epochs = mean_score()  # Inspect's default epoch reducer
    per_sample = []
    for sid, text, values in samples:
        per_sample.append(SampleScore(score=reduce_epochs([Score(value=v) for v in values]), sample_id=sid))
        for e, v in enumerate(values, 1):
            rows.append(
                EvalSample(
                    id=sid,
                    epoch=e,
                    input=text,
                    target="A",
                    output=ModelOutput.from_content(model=model, content="A"),
                    scores={scorer: Score(value=v)},
                )
            )
    # The aggregate Inspect itself reports: its accuracy metric over the epoch-reduced sample scores.
    accuracy = float(inspect_accuracy()(per_sample))
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            created="2026-11-20T10:00:00+00:00",
            task=task,
            task_version=3,
            dataset=EvalDataset(name=task, samples=len(samples)),
            model=model,
            model_generate_config=GenerateConfig(temperature=0.0, max_tokens=16),
            config=EvalConfig(epochs=epochs),
            task_args={"fewshot": 0},
            packages={"inspect_ai": "0.3.test"},
        ),
        results=EvalResults(
            total_samples=len(samples),
            completed_samples=len(samples),
            scores=[
                EvalScore(
                    name=scorer,
                    scorer=scorer,
                    metrics={"accuracy": EvalMetric(name="accuracy", value=accuracy)},
                )
            ],
        ),
        stats=EvalStats(started_at="2026-11-20T10:00:00+00:00", completed_at="2026-11-20T10:01:00+00:00"),
        samples=rows,
    )
    write_eval_log(log, str(path))
    return accuracy
