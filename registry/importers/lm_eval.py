"""lm-evaluation-harness `--log_samples` output: `results_<date>.json` + `samples_<task>_<date>.jsonl`.

lm-eval ships no reader for its own logs (they are plain JSON / JSON Lines), so this module parses
them. The results file names the model, the config and, per task, its version, n-shot and config;
each samples line is one document with its per-sample metric values (one line per filter).

Question identity: `<task>:<doc_id>` (the task can be renamed with `benchmark`). The question text
is the task's `doc_to_text` rendered on the document, so 0-shot and few-shot runs of one task land
on the same question; where the template cannot be rendered, a 0-shot run uses its prompt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import orjson

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
    read_json,
    sha256_files,
)

TOOL = "lm-eval"
PREFERRED_METRICS = ("acc", "exact_match", "pass@1", "pass_at_1", "em", "acc_norm")
_RESULTS = re.compile(r"^results_(?P<stamp>.+)\.json$")


def find_results(path: Path) -> list[Path]:
    """The results files at `path`: the file itself, or every results_*.json under the folder."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such file or folder")
    found = sorted(p for p in path.rglob("results_*.json") if p.is_file())
    if not found:
        raise ImportFormatError(f"{path}: no lm-eval results_*.json file found")
    return found


def read(path: Path, options: ImportOptions) -> ImportBatch:
    """Read one lm-eval results file (or every one under a folder) with its samples files."""
    return read_each(TOOL, find_results(path), _read_run, options)


def _read_run(results_path: Path, options: ImportOptions, builder: BatchBuilder) -> None:
    results = read_json(results_path)
    if not isinstance(results, dict) or not isinstance(results.get("configs"), dict):
        raise ImportFormatError(f"{results_path}: not an lm-eval results file (no 'configs' object)")
    m = _RESULTS.match(results_path.name)
    if m is None:
        raise ImportFormatError(f"{results_path}: expected a file named results_<date>.json")
    stamp = m.group("stamp")
    config = results.get("config") or {}
    model_name = options.model_name or _model_name(results, config)
    if not model_name:
        raise ImportFormatError(f"{results_path}: no model name in the results file; give one (--model-name)")
    model = builder.model(model_name, str(results_path))
    run_at = from_timestamp(results.get("date"))
    for task, task_cfg in results["configs"].items():
        samples_path = results_path.with_name(f"samples_{task}_{stamp}.jsonl")
        if not samples_path.is_file():
            raise ImportFormatError(
                f"{results_path}: task {task!r} has no samples file {samples_path.name} "
                "(run lm_eval with --log_samples)"
            )
        _read_task(
            results, config, task, task_cfg or {}, samples_path, results_path, model, run_at, options, builder
        )


def _model_name(results: dict[str, Any], config: dict[str, Any]) -> str | None:
    args = config.get("model_args")
    if isinstance(args, dict) and args.get("pretrained"):
        return str(args["pretrained"])
    if isinstance(args, str):
        for part in args.split(","):
            k, _, v = part.partition("=")
            if k.strip() in ("pretrained", "model") and v.strip():
                return v.strip()
    name = results.get("model_name")
    return str(name) if name else None


def _read_task(
    results: dict[str, Any],
    config: dict[str, Any],
    task: str,
    task_cfg: dict[str, Any],
    samples_path: Path,
    results_path: Path,
    model: int,
    run_at: Any,
    options: ImportOptions,
    builder: BatchBuilder,
) -> None:
    n_shot_raw = (results.get("n-shot") or {}).get(task, task_cfg.get("num_fewshot"))
    n_shot = int(n_shot_raw) if isinstance(n_shot_raw, int | float) else None
    benchmark = ImportOptions.per_task(options.benchmark, task) or task
    want_metric = ImportOptions.per_task(options.metric, task)
    want_filter = ImportOptions.per_task(options.filter, task)
    template = _Template(task_cfg.get("doc_to_text"))
    # One compact row per line (the decoded samples are dropped at once: a large log holds every
    # prompt several times, and keeping the dicts makes the garbage collector crawl).
    rows: list[_Row] = []
    filters: list[str] = []
    metric = want_metric
    with samples_path.open("rb") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                sample = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ImportFormatError(f"{samples_path}, line {line_no}: not valid JSON ({exc})") from None
            if not isinstance(sample, dict) or "doc_id" not in sample:
                raise ImportFormatError(f"{samples_path}, line {line_no}: not an lm-eval sample (no doc_id)")
            flt = str(sample.get("filter", "none"))
            if flt not in filters:
                filters.append(flt)
            if metric is None:
                metric = _default_metric(sample, samples_path)
            where = f"{samples_path}, line {line_no}"
            if metric in sample:
                value: object = sample[metric]
            else:
                have = [k for k in sample.get("metrics", []) if k in sample]
                value = ImportFormatError(
                    f"{where}: no metric {metric!r} (this sample has {have}); choose with --metric"
                )
            try:
                text: str | ImportFormatError = _question_text(sample, template, n_shot, where, task)
            except ImportFormatError as exc:
                text = exc
            rows.append(_Row(where, sample["doc_id"], flt, value, text))
    if not rows or metric is None:
        raise ImportFormatError(f"{samples_path}: no samples")
    flt = want_filter or ("none" if "none" in filters else filters[0])
    if flt not in filters:
        raise ImportFormatError(f"{samples_path}: task {task!r} has no filter {flt!r} (it has {filters})")
    gen = {
        "model": config.get("model"),
        "model_args": config.get("model_args"),
        "gen_kwargs": config.get("gen_kwargs"),
        "generation_kwargs": task_cfg.get("generation_kwargs"),
        "output_type": task_cfg.get("output_type"),
        "metric": metric,
        "filter": flt,
        "limit": config.get("limit"),
        "chat_template_sha": results.get("chat_template_sha"),
        "system_instruction_sha": results.get("system_instruction_sha"),
        "fewshot_as_multiturn": results.get("fewshot_as_multiturn"),
        "task_hash": (results.get("task_hashes") or {}).get(task),
    }
    version = (results.get("versions") or {}).get(task, (task_cfg.get("metadata") or {}).get("version"))
    source = builder.source(
        Provenance(
            tool=TOOL,
            tool_version=results.get("lm_eval_version"),
            task=task,
            task_version=None if version is None else str(version),
            n_shot=n_shot,
            generation={k: v for k, v in gen.items() if v not in (None, {}, "")},
            run_at=run_at,
            file_name=samples_path.name,
            file_sha256=sha256_files([results_path, samples_path]),
        )
    )
    for row in rows:
        if row.filter != flt:
            continue
        if isinstance(row.value, ImportFormatError):
            raise row.value
        if isinstance(row.text, ImportFormatError):
            raise row.text
        score = as_score(row.value, row.where, f"metric {metric!r}")
        key = question_key(benchmark, row.doc_id, row.text, options.key_by)
        q = builder.question(
            QuestionSpec(key=key, text=row.text, category=task, benchmark=benchmark), row.where
        )
        builder.score(model, q, score, source, row.where)


class _Row(NamedTuple):
    where: str
    doc_id: object
    filter: str
    value: object  # the metric's value, or the error to raise if this row is imported
    text: str | ImportFormatError


def _default_metric(sample: dict[str, Any], path: Path) -> str:
    names = [m for m in sample.get("metrics", []) if m in sample]
    for m in PREFERRED_METRICS:
        if m in names:
            return m
    if names:
        return str(names[0])
    raise ImportFormatError(f"{path}, first sample: no per-sample metric values found")


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _is_plain(spec: str) -> bool:
    """A template whose only Jinja syntax is `{{identifier}}` placeholders."""
    if "{{" not in spec:
        return False
    rest = _PLACEHOLDER.sub("", spec)
    return "{{" not in rest and "{%" not in rest and "{#" not in rest and "}}" not in rest


class _Template:
    """The task's `doc_to_text`, rendered the way lm-eval does: a document field or a Jinja template."""

    def __init__(self, spec: object) -> None:
        self.spec = spec if isinstance(spec, str) else None
        self._compiled: Any = None
        self._fields: list[str] | None = None
        if self.spec is not None and _is_plain(self.spec):
            # Only `{{field}}` placeholders: substitute directly (a Jinja render costs ~100 us per
            # document, the bulk of reading a large log) with Jinja's result: str() of each value.
            self._fields = _PLACEHOLDER.findall(self.spec)
            self._parts = _PLACEHOLDER.split(self.spec)[::2]
        elif self.spec is not None and ("{{" in self.spec or "{%" in self.spec):
            from jinja2 import StrictUndefined, TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
            env.filters["regex_replace"] = lambda s, pat, rep: re.sub(pat, rep, s)
            try:
                self._compiled = env.from_string(self.spec)
            except TemplateError:
                self._compiled = None

    def render(self, doc: object) -> str | None:
        if self.spec is None or not isinstance(doc, dict):
            return None
        if self.spec in doc:
            return str(doc[self.spec])
        if self._fields is not None:
            if any(f not in doc for f in self._fields):
                return None
            out = [self._parts[0]]
            for f, part in zip(self._fields, self._parts[1:], strict=True):
                out.append(str(doc[f]))
                out.append(part)
            return "".join(out)
        if self._compiled is None:
            return None
        try:
            return str(self._compiled.render(**doc))
        except Exception:  # a template lm-eval rendered with its own helpers: fall back to the prompt
            return None


def _question_text(
    sample: dict[str, Any], template: _Template, n_shot: int | None, where: str, task: str
) -> str:
    rendered = template.render(sample.get("doc"))
    if rendered is not None and rendered.strip():
        return rendered
    if not n_shot:
        args = sample.get("arguments")
        first = next(iter(args.values()), None) if isinstance(args, dict) and args else None
        if isinstance(args, list) and args:
            first = args[0]
        ctx = (
            first.get("arg_0") if isinstance(first, dict) else (first[0] if isinstance(first, list) else None)
        )
        if isinstance(ctx, str) and ctx.strip():
            return ctx
        raise ImportFormatError(f"{where}: no prompt in the sample's arguments")
    raise ImportFormatError(
        f"{where}: task {task!r} is {n_shot}-shot and its doc_to_text cannot be rendered here, so the "
        "question cannot be told apart from its few-shot examples; import a 0-shot run of the task"
    )
