"""Inspect eval logs (`.eval` or `.json`), read with `inspect_ai.log`'s own API.

`inspect_ai` is imported only when this format is used, so the registry runs without it. One log is
one task run on one model; every sample's score (the chosen scorer's value, converted by Inspect's
own `value_to_float`: C=1, I=0, P=0.5, N=0) averaged over epochs, as Inspect's default reducer does.
Question identity: `<task>:<sample id>`.
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
    from_timestamp,
    question_key,
    read_each,
    sha256_file,
)

TOOL = "inspect"


def _log_api() -> Any:
    try:
        import inspect_ai.log as log_api
    except ImportError:
        raise ImportFormatError(
            "importing Inspect logs needs the inspect_ai package: pip install inspect_ai"
        ) from None
    return log_api


def find_logs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such file or folder")
    api = _log_api()
    found = sorted(Path(info.name.removeprefix("file://")) for info in api.list_eval_logs(str(path)))
    if not found:
        raise ImportFormatError(f"{path}: no Inspect log (.eval or .json) found")
    return found


def read(path: Path, options: ImportOptions) -> ImportBatch:
    """Read one Inspect log, or every log in a folder."""
    return read_each(TOOL, find_logs(path), _read_log, options)


def _read_log(path: Path, options: ImportOptions, builder: BatchBuilder) -> None:
    api = _log_api()
    from inspect_ai.scorer import value_to_float

    try:
        log = api.read_eval_log(str(path))
    except Exception as exc:  # Inspect raises assorted errors on a file that is not a log
        raise ImportFormatError(f"{path}: not a readable Inspect log ({type(exc).__name__}: {exc})") from None
    spec = log.eval
    if log.status not in ("success", "cancelled", "error"):
        raise ImportFormatError(f"{path}: the eval is {log.status!r}; import a finished log")
    if not log.samples:
        raise ImportFormatError(f"{path}: the log holds no samples (was it written with header_only?)")
    task = spec.task
    benchmark = ImportOptions.per_task(options.benchmark, task) or task
    scorer = ImportOptions.per_task(options.metric, task) or _default_scorer(log, path)
    model = builder.model(options.model_name or spec.model, str(path))
    gen = spec.model_generate_config.model_dump(exclude_none=True) if spec.model_generate_config else {}
    fewshot = spec.task_args.get("fewshot") if spec.task_args else None
    source = builder.source(
        Provenance(
            tool=TOOL,
            tool_version=(spec.packages or {}).get("inspect_ai"),
            task=task,
            task_version=str(spec.task_version),
            n_shot=int(fewshot) if isinstance(fewshot, int) and not isinstance(fewshot, bool) else None,
            generation={
                k: v
                for k, v in {
                    "generate_config": gen,
                    "model_args": spec.model_args,
                    "task_args": spec.task_args,
                    "solver": spec.solver,
                    "scorer": scorer,
                    "epochs": spec.config.epochs if spec.config else None,
                    "dataset": spec.dataset.name if spec.dataset else None,
                }.items()
                if v not in (None, {}, "")
            },
            run_at=from_timestamp(spec.created),
            file_name=path.name,
            file_sha256=sha256_file(path),
        )
    )
    to_float = value_to_float()
    per_sample: dict[str, list[float]] = defaultdict(list)
    first: dict[str, tuple[Any, str]] = {}
    for i, sample in enumerate(log.samples):
        where = f"{path}, sample {sample.id!r} epoch {sample.epoch}"
        scores = sample.scores or {}
        if scorer not in scores:
            raise ImportFormatError(f"{where}: no score from scorer {scorer!r} (it has {sorted(scores)})")
        value = scores[scorer].value
        if isinstance(value, dict | list):
            raise ImportFormatError(
                f"{where}: scorer {scorer!r} gives a {type(value).__name__}, not one value per sample"
            )
        y = as_score(to_float(value) if isinstance(value, str) else value, where, f"score of {scorer!r}")
        sid = str(sample.id)
        per_sample[sid].append(y)
        first.setdefault(sid, (sample, f"{path}, sample {sample.id!r} (record {i + 1})"))
    for sid, ys in per_sample.items():
        sample, where = first[sid]
        text = _input_text(sample.input)
        if not text.strip():
            raise ImportFormatError(f"{where}: the sample's input is empty")
        key = question_key(benchmark, sid, text, options.key_by)
        q = builder.question(QuestionSpec(key=key, text=text, category=task, benchmark=benchmark), where)
        builder.score(model, q, sum(ys) / len(ys), source, where)


def _default_scorer(log: Any, path: Path) -> str:
    if log.results is not None and log.results.scores:
        return str(log.results.scores[0].name)
    for sample in log.samples:
        if sample.scores:
            return str(next(iter(sample.scores)))
    raise ImportFormatError(f"{path}: no scores in the log (was it scored?)")


def _input_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "\n\n".join(m.text for m in value if getattr(m, "role", "user") != "assistant")
