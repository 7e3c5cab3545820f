"""HELM per-instance outputs: a run folder with `per_instance_stats.json` and `instances.json`.

HELM (crfm-helm) writes one folder per run under `benchmark_output/runs/<suite>/<run name>/`, with
`run_spec.json` (model, adapter settings), `instances.json` (the scenario's instances: input text,
references, split, id, perturbation) and `per_instance_stats.json` (per instance and train trial, a
list of stats named `{"name": metric, "split": ...}` with a `mean`). HELM writes them as
`asdict_without_nones` of its dataclasses (`helm.benchmark.runner.Runner.run_one`) and reads them back
with `helm.common.codec.from_json(text, List[PerInstanceStats])`; that reader is not used here because
crfm-helm (0.5.16) cannot be installed beside this project: it pulls torch 2.14 with CUDA 13,
torchvision, spacy and datasets, replacing the CPU torch the encoder runs on. The JSON is parsed by the
same field names: `PerInstanceStats(instance_id, perturbation, train_trial_index, stats)`
(benchmark/metrics/metric.py), `Stat(name: MetricName(name, split, sub_split, perturbation), count,
sum, sum_squared, min, max, mean, variance, stddev)` (metrics/statistic.py, metrics/metric_name.py),
`Instance(input: Input(text), references, split, sub_split, id, perturbation)`
(benchmark/scenarios/scenario.py); a field that is None is absent, as `asdict_without_nones` drops it.

Only unperturbed instances are imported; a score is the metric's mean over train trials (HELM
averages trials the same way). Question identity: `<scenario part of the run name>:<instance id>`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from registry.importers.base import (
    BatchBuilder,
    ImportBatch,
    ImportFormatError,
    ImportOptions,
    Provenance,
    QuestionSpec,
    as_score,
    question_key,
    read_each,
    read_json,
    sha256_files,
)

TOOL = "helm"
PREFERRED_METRICS = ("exact_match", "quasi_exact_match", "prefix_exact_match", "quasi_prefix_exact_match")


def find_runs(path: Path) -> list[Path]:
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such folder")
    if (path / "per_instance_stats.json").is_file():
        return [path]
    runs = sorted(p.parent for p in path.rglob("per_instance_stats.json"))
    if not runs:
        raise ImportFormatError(f"{path}: no HELM run folder (with per_instance_stats.json) found")
    return runs


def read(path: Path, options: ImportOptions) -> ImportBatch:
    """Read one HELM run folder, or every run folder under `path`."""
    return read_each(TOOL, find_runs(path), _read_run, options)


def _task_of(run_name: str) -> str:
    """`mmlu:subject=anatomy,method=...,model=openai_gpt2` -> the run name without the model part."""
    scenario, _, args = run_name.partition(":")
    kept = [a for a in args.split(",") if a and not a.startswith(("model=", "model_deployment="))]
    return f"{scenario}:{','.join(kept)}" if kept else scenario


def _read_run(run: Path, options: ImportOptions, builder: BatchBuilder) -> None:
    stats_path = run / "per_instance_stats.json"
    inst_path = run / "instances.json"
    spec_path = run / "run_spec.json"
    per_instance = read_json(stats_path)
    instances = read_json(inst_path)
    spec = read_json(spec_path) if spec_path.is_file() else {}
    if not isinstance(per_instance, list):
        raise ImportFormatError(f"{stats_path}: expected a list of per-instance stats")
    if not isinstance(instances, list):
        raise ImportFormatError(f"{inst_path}: expected a list of instances")
    adapter: dict[str, Any] = spec.get("adapter_spec") or {}
    run_name = str(spec.get("name") or run.name)
    task = _task_of(run_name)
    benchmark = ImportOptions.per_task(options.benchmark, task) or task
    model_name = options.model_name or adapter.get("model")
    if not model_name:
        raise ImportFormatError(f"{spec_path}: no adapter_spec.model; give the model name (--model-name)")
    model = builder.model(str(model_name), str(run))

    texts: dict[str, str] = {}
    for i, inst in enumerate(instances):
        where = f"{inst_path}, instance {i + 1}"
        if not isinstance(inst, dict) or "id" not in inst:
            raise ImportFormatError(f"{where}: an instance needs an 'id'")
        if inst.get("perturbation"):
            continue
        text = (inst.get("input") or {}).get("text")
        if not isinstance(text, str):
            raise ImportFormatError(f"{where}: instance {inst['id']!r} has no input.text")
        texts[str(inst["id"])] = text

    metric = ImportOptions.per_task(options.metric, task)
    values: dict[str, list[float]] = defaultdict(list)
    for i, entry in enumerate(per_instance):
        where = f"{stats_path}, entry {i + 1}"
        if (
            not isinstance(entry, dict)
            or "instance_id" not in entry
            or not isinstance(entry.get("stats"), list)
        ):
            raise ImportFormatError(f"{where}: expected instance_id and a list of stats")
        if entry.get("perturbation"):
            continue
        iid = str(entry["instance_id"])
        if iid not in texts:
            raise ImportFormatError(f"{where}: instance {iid!r} is not in {inst_path.name}")
        by_name = {}
        for st in entry["stats"]:
            name = st.get("name") or {}
            if not name.get("perturbation"):
                by_name[name.get("name")] = st
        if metric is None:
            metric = next((m for m in PREFERRED_METRICS if m in by_name), None)
            if metric is None:
                raise ImportFormatError(
                    f"{where}: none of {list(PREFERRED_METRICS)} among the stats; choose one with --metric"
                )
        st = by_name.get(metric)
        if st is None:
            raise ImportFormatError(f"{where}: instance {iid!r} has no stat {metric!r}")
        mean = st.get("mean")
        if mean is None and st.get("count"):
            mean = st.get("sum", 0) / st["count"]
        values[iid].append(as_score(mean, where, f"stat {metric!r}"))
    source = builder.source(
        Provenance(
            tool=TOOL,
            tool_version=None,  # HELM does not record its version in the run folder
            task=task,
            task_version=None,
            n_shot=adapter.get("max_train_instances"),
            generation={
                k: adapter[k]
                for k in (
                    "method",
                    "model_deployment",
                    "temperature",
                    "max_tokens",
                    "num_outputs",
                    "stop_sequences",
                    "instructions",
                    "num_train_trials",
                )
                if adapter.get(k) not in (None, "", [])
            }
            | {"metric": metric},
            run_at=None,
            file_name=f"{run.name}/per_instance_stats.json",
            file_sha256=sha256_files([stats_path, inst_path, *([spec_path] if spec_path.is_file() else [])]),
        )
    )
    for iid, ys in values.items():
        text = texts[iid]
        where = f"{stats_path}, instance {iid!r}"
        key = question_key(benchmark, iid, text, options.key_by)
        q = builder.question(QuestionSpec(key=key, text=text, category=task, benchmark=benchmark), where)
        builder.score(model, q, sum(ys) / len(ys), source, where)
