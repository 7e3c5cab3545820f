"""HELM run folders in the layout crfm-helm writes (run_spec, instances, per_instance_stats, stats).

The files are written here, not by HELM: crfm-helm 0.5.16 cannot be installed beside this project (it
pulls torch 2.14 with CUDA 13, torchvision, spacy and datasets, replacing the CPU torch the encoder
uses). They follow what `helm.benchmark.runner.Runner.run_one` writes, `asdict_without_nones` of HELM's
dataclasses: `PerInstanceStats(instance_id, perturbation, train_trial_index, stats)` (metrics/metric.py),
`Stat(name: MetricName, count, sum, sum_squared, min, max, mean, variance, stddev)` (metrics/statistic.py),
`MetricName(name, split, sub_split, perturbation)` (metrics/metric_name.py), `PerturbationDescription(name,
robustness, fairness, computed_on, seed)` and `Instance(input: Input(text), references: [Reference(output:
Output(text), tags)], split, sub_split, id, perturbation, ...)` (scenarios/scenario.py); None fields are
left out, as `asdict_without_nones` leaves them out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry import importers, services
from registry.importers import ImportFormatError, ImportOptions
from registry.services import Context

QUESTIONS = ["The capital of France is", "2 + 2 =", "The chemical symbol for gold is", "The largest ocean is"]


def _stat(name: str, values: list[float], perturbation: dict[str, Any] | None = None) -> dict[str, Any]:
    """`asdict_without_nones(Stat(MetricName(name, split="test", perturbation=...)).add(v) for v in values)`,
    computed as helm.benchmark.metrics.statistic.Stat does (population variance from sum_squared)."""
    metric: dict[str, Any] = {"name": name, "split": "test"}
    if perturbation:
        metric["perturbation"] = perturbation
    n = len(values)
    total, total_sq = 0.0, 0.0
    for v in values:
        total += v
        total_sq += v * v
    mean = total / n
    variance = max(0.0, total_sq / n - mean**2)
    return {
        "name": metric,
        "count": n,
        "sum": total,
        "sum_squared": total_sq,
        "min": min(values),
        "max": max(values),
        "mean": mean,
        "variance": variance,
        "stddev": math.sqrt(variance),
    }


def write_run(root: Path, model: str, correct: list[list[float]], trials: int = 1) -> float:
    """A HELM run folder; `correct[i][t]` = exact_match of instance i in train trial t. Returns HELM's
    aggregate exact_match (mean over trials of the mean over instances), as written to stats.json."""
    run_name = f"knowledge:subject=general,method=generation,model={model.replace('/', '_')}"
    run = root / run_name
    run.mkdir(parents=True)
    robust = {"name": "robustness", "robustness": True, "fairness": False, "computed_on": "perturbed"}
    instances = [
        {
            "input": {"text": q},
            "references": [{"output": {"text": "x"}, "tags": ["correct"]}],
            "split": "test",
            "id": f"id{i}",
        }
        for i, q in enumerate(QUESTIONS)
    ]
    instances.append({**instances[0], "input": {"text": "THE CAPITAL OF FRANCE IS"}, "perturbation": robust})
    per_instance = []
    for i, per_trial in enumerate(correct):
        for t in range(trials):
            per_instance.append(
                {
                    "instance_id": f"id{i}",
                    "train_trial_index": t,
                    "stats": [_stat("exact_match", [per_trial[t]]), _stat("num_output_tokens", [3.0])],
                }
            )
    per_instance.append(
        {
            "instance_id": "id0",
            "train_trial_index": 0,
            "perturbation": robust,
            "stats": [_stat("exact_match", [0.0], robust)],
        }
    )
    trial_means = [float(np.mean([c[t] for c in correct])) for t in range(trials)]
    aggregate = float(np.mean(trial_means))
    spec = {
        "name": run_name,
        "scenario_spec": {"class_name": "helm.benchmark.scenarios.knowledge.KnowledgeScenario", "args": {}},
        "adapter_spec": {
            "method": "generation",
            "model": model,
            "model_deployment": model,
            "max_train_instances": 5,
            "num_train_trials": trials,
            "temperature": 0.0,
            "max_tokens": 10,
            "num_outputs": 1,
            "stop_sequences": ["\n"],
            "instructions": "",
        },
        "metric_specs": [],
        "groups": ["knowledge"],
    }
    (run / "run_spec.json").write_text(json.dumps(spec))
    (run / "instances.json").write_text(json.dumps(instances))
    (run / "per_instance_stats.json").write_text(json.dumps(per_instance))
    # HELM's aggregate (metrics/metric.py): per train trial the instances' stats merged, then each
    # trial's `take_mean()` merged, so the run's stat is the mean of the trial means, count = trials.
    (run / "stats.json").write_text(json.dumps([_stat("exact_match", trial_means)]))
    return aggregate


def test_exact_match_round_trips_and_perturbations_are_left_out(tmp_path: Path) -> None:
    agg = write_run(tmp_path / "suite", "openai/gpt2", [[1.0], [0.0], [1.0], [1.0]])
    batch = importers.read(tmp_path / "suite", "helm")
    assert batch.models == ["openai/gpt2"]
    assert [q.text for q in batch.questions] == QUESTIONS
    assert batch.questions[0].key == "knowledge:subject=general,method=generation:id0"
    stats = json.loads(next((tmp_path / "suite").rglob("stats.json")).read_text())
    assert (
        float(np.mean(batch.scores, dtype=np.float64))
        == pytest.approx(stats[0]["mean"])
        == pytest.approx(agg)
    )
    (prov,) = batch.provenances
    assert (prov.tool, prov.n_shot, prov.generation["metric"], prov.generation["temperature"]) == (
        "helm",
        5,
        "exact_match",
        0.0,
    )


def test_train_trials_are_averaged(tmp_path: Path) -> None:
    agg = write_run(tmp_path, "meta/llama", [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]], trials=2)
    batch = importers.read(tmp_path, "helm")
    assert batch.scores.tolist() == [0.5, 1.0, 0.0, 0.5]
    (stat,) = json.loads(next(tmp_path.rglob("stats.json")).read_text())
    assert stat["count"] == 2  # one merged take_mean() per train trial
    assert float(np.mean(batch.scores, dtype=np.float64)) == pytest.approx(stat["mean"]) == pytest.approx(agg)


def test_two_models_share_questions_and_import(ctx: Context, tmp_path: Path) -> None:
    write_run(tmp_path, "openai/gpt2", [[1.0], [0.0], [1.0], [1.0]])
    write_run(tmp_path, "meta/llama", [[0.0], [0.0], [1.0], [0.0]])
    report = services.import_batch(ctx, importers.read(tmp_path, "helm"))
    assert (report.models_created, report.questions_created, report.evaluations, report.sources_created) == (
        2,
        4,
        8,
        2,
    )


def test_malformed_runs_are_named(tmp_path: Path) -> None:
    write_run(tmp_path, "openai/gpt2", [[1.0], [0.0], [1.0], [1.0]])
    stats = next(tmp_path.rglob("per_instance_stats.json"))
    entries = json.loads(stats.read_text())
    entries[2]["instance_id"] = "id99"
    stats.write_text(json.dumps(entries))
    with pytest.raises(
        ImportFormatError, match=r"per_instance_stats.json, entry 3: instance 'id99' is not in"
    ):
        importers.read(tmp_path, "helm")
    with pytest.raises(ImportFormatError, match=r"no stat 'f1_score'"):
        entries[2]["instance_id"] = "id2"
        stats.write_text(json.dumps(entries))
        importers.read(tmp_path, "helm", ImportOptions(metric={"*": "f1_score"}))
    stats.write_text("[{")
    with pytest.raises(ImportFormatError, match=r"per_instance_stats.json: not valid JSON"):
        importers.read(tmp_path, "helm")
