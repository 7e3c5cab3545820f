"""Score matrices published by routing benchmarks, and a plain wide CSV.

Layouts, as their authors document them:

- wide CSV: a `model` column and one column per question. The column names are question ids when a
  `questions.csv` (question_id,text[,category]) sits next to the file, else they are the question texts.
- RouterBench (withmartian/routerbench): one row per prompt with `sample_id`, `prompt`, `eval_name`,
  and per model `<model>` (score), `<model>|model_response`, `<model>|total_cost`: the wide table its
  `convertors/common.py` (`convert_to_wide_format`) builds. The authors ship it as a pandas pickle
  (`routerbench_0shot.pkl`); a CSV with the same columns is read too. A prompt may be a list of turns,
  or (as that file notes) the string form of one: the turns are joined.
- LLMRouterBench (ynulihao/LLMRouterBench): what its `data_collector/storage.py` (`ResultsStorage`)
  writes: `results/bench/<dataset>/<split>/<model>/<dataset>-<split>-<model>-<YYYYMMDD_HHMMSS>.json`
  (or a legacy `result.json`), each `{"performance", "model_name", "dataset_name", "split", "demo",
  "records": [{"index", "origin_query", "prompt", "score", ...}]}`. As `ResultsStorage` does, demo
  runs are skipped and the newest file per (dataset, split, model) by the filename's timestamp is
  read; a record whose `score` is null (not scored) is left out.
- RouterEval (MilkThink-Lab/RouterEval): the `data/` folder of its README, `leaderboard_score/
  leaderboard_<name>.pkl` = `{"model": [...], "data": {<subset>: {"correctness": (items, models)
  array}}}` (its `utils.py` reads `data['data'][sub]['correctness']`) with `leaderboard_prompt/
  leaderboard_<name>_prompt.pkl` = `{<subset>: [prompt, ...]}` (`utils.create_prompts` reads
  `prompt[sub]`). The file names and the `model` key are those of the released archives (the authors'
  `get_router_dataset.py` that reads them is not public); a prompt file named like its score file,
  and a `models` key, are read too. The archives unpack into a nested folder of the same name, which
  is searched.

Pickles can run code when loaded, so they are read only when the caller allows it (the CLI, on
local files); the HTTP endpoint refuses them.
"""

from __future__ import annotations

import ast
import csv
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

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
    read_json,
    sha256_file,
    sha256_files,
)

csv.field_size_limit(2**31 - 1)


def _csv_rows(
    path: Path, required: tuple[str, ...]
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise ImportFormatError(f"{path}: file not found")
    f = path.open(newline="", encoding="utf-8")
    reader = csv.DictReader(f)
    header = list(reader.fieldnames or [])
    missing = [c for c in required if c not in header]
    if missing:
        f.close()
        raise ImportFormatError(f"{path}: header lacks column(s) {missing}")

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with f:
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise ImportFormatError(f"{path}, line {reader.line_num}: wrong number of fields")
                yield reader.line_num, row

    return header, rows()


def _load_pickle(path: Path, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise ImportFormatError(
            f"{path}: pickle files can run code when loaded and are only read from the command line "
            "(`locus-registry import`); convert it to CSV to upload it"
        )
    if path.suffix in (".pkl", ".pickle") and _is_pandas_pickle(path):
        try:
            import pandas as pd
        except ImportError:
            raise ImportFormatError(
                f"{path}: reading a pandas pickle needs pandas: pip install pandas"
            ) from None
        return pd.read_pickle(path)
    with path.open("rb") as f:
        try:
            return pickle.load(f)
        except Exception as exc:
            raise ImportFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def _is_pandas_pickle(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096)
    return b"pandas" in head


# ---------------------------------------------------------------- wide CSV


def read_wide_csv(path: Path, options: ImportOptions) -> ImportBatch:
    """`model,<q1>,<q2>,...`: one row per model; an empty cell means not evaluated."""
    name = options.name or path.stem
    header, rows = _csv_rows(path, ("model",))
    columns = [c for c in header if c != "model"]
    if not columns:
        raise ImportFormatError(f"{path}: no question columns besides 'model'")
    qfile = path.with_name("questions.csv")
    texts: dict[str, tuple[str, str | None]] = {}
    files = [path]
    if qfile.is_file():
        files.append(qfile)
        _, qrows = _csv_rows(qfile, ("question_id", "text"))
        for _line, row in qrows:
            texts[row["question_id"].strip()] = (row["text"], (row.get("category") or "").strip() or None)
        unknown = [c for c in columns if c.strip() not in texts]
        if unknown:
            raise ImportFormatError(f"{path}: column(s) {unknown[:5]} are not question_ids in {qfile}")
    builder = BatchBuilder(name)
    source = builder.source(
        Provenance(tool="wide-csv", task=name, file_name=path.name, file_sha256=sha256_files(files))
    )
    q_idx: list[int] = []
    for col in columns:
        where = f"{path}, column {col!r}"
        if texts:
            text, cat = texts[col.strip()]
            key = question_key(name, col.strip(), text, options.key_by)
        else:
            text, cat = col, None
            key = question_key(name, None, text, "text")
        q_idx.append(builder.question(QuestionSpec(key=key, text=text, category=cat, benchmark=name), where))
    for line, row in rows:
        m = builder.model(row["model"], f"{path}, line {line}")
        for col, q in zip(columns, q_idx, strict=True):
            cell = row[col].strip()
            if cell:
                where = f"{path}, line {line}, column {col[:60]!r}"
                builder.score(m, q, as_score(cell, where), source, where)
    return builder.build()


# ---------------------------------------------------------------- RouterBench


def read_routerbench(path: Path, options: ImportOptions, *, allow_pickle: bool = False) -> ImportBatch:
    """RouterBench's wide table (pickle or CSV): per prompt, per model a score column."""
    name = options.name or "routerbench"
    if path.suffix == ".csv":
        header, rows = _csv_rows(path, ("sample_id", "prompt", "eval_name"))
        records: Iterator[tuple[str, dict[str, Any]]] = ((f"{path}, line {n}", r) for n, r in rows)
    else:
        frame = _load_pickle(path, allow_pickle)
        if not hasattr(frame, "columns") or not hasattr(frame, "to_dict"):
            raise ImportFormatError(f"{path}: expected a pandas DataFrame (RouterBench's pickle)")
        header = [str(c) for c in frame.columns]
        missing = [c for c in ("sample_id", "prompt", "eval_name") if c not in header]
        if missing:
            raise ImportFormatError(f"{path}: the table lacks column(s) {missing}")
        records = ((f"{path}, row {i + 1}", r) for i, r in enumerate(frame.to_dict("records")))
    models = [c for c in header if f"{c}|model_response" in header or f"{c}|total_cost" in header]
    if not models:
        raise ImportFormatError(f"{path}: no model columns (a model M has columns M and M|model_response)")
    builder = BatchBuilder(name)
    source = builder.source(
        Provenance(tool="routerbench", task=name, file_name=path.name, file_sha256=sha256_file(path))
    )
    m_idx = [builder.model(m, f"{path}, column {m!r}") for m in models]
    for where, row in records:
        text = _prompt_text(row["prompt"])
        sid = str(row["sample_id"]).strip()
        key = question_key(name, sid or None, text, options.key_by)
        cat = str(row["eval_name"]).strip() or None
        q = builder.question(QuestionSpec(key=key, text=text, category=cat, benchmark=name), where)
        for model, m in zip(models, m_idx, strict=True):
            value = row[model]
            if value is None or (isinstance(value, str) and not value.strip()) or _is_nan(value):
                continue
            builder.score(m, q, as_score(value, f"{where}, column {model!r}"), source, where)
    return builder.build()


def _prompt_text(value: object) -> str:
    # Some RouterBench prompts are a list of turns (MT-Bench), stored as a list or as its string form
    # (convertors/common.py: "A string representation of a list"): join the turns.
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            turns = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            turns = None
        if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns):
            value = turns
    if isinstance(value, list | tuple):
        return "\n\n".join(str(v) for v in value)
    return str(value)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


# ---------------------------------------------------------------- LLMRouterBench

_STAMP = re.compile(r"(\d{8})_(\d{6})\.json$")  # ResultsStorage's file names end in YYYYMMDD_HHMMSS.json


def _bench_files(path: Path) -> dict[tuple[str, str, str], list[Path]]:
    """Result files under a results/bench folder, by (dataset, split, model folder)."""
    root = path / "bench" if (path / "bench").is_dir() else path
    out: dict[tuple[str, str, str], list[Path]] = {}
    for f in sorted(root.rglob("*.json")) if root.is_dir() else []:
        parts = f.relative_to(root).parts
        if len(parts) < 4:
            continue
        out.setdefault((parts[0], parts[1], "/".join(parts[2:-1])), []).append(f)
    return out


def _stamp(f: Path) -> str:
    m = _STAMP.search(f.name)
    return m.group(1) + m.group(2) if m else ""


def read_llmrouterbench(path: Path, options: ImportOptions) -> ImportBatch:
    """`<dataset>/<split>/<model>/<dataset>-<split>-<model>-<timestamp>.json` under `path` (results/bench)."""
    name = options.name or "llmrouterbench"
    groups = _bench_files(path)
    if not groups:
        raise ImportFormatError(
            f"{path}: no <dataset>/<split>/<model>/<dataset>-<split>-<model>-<timestamp>.json result "
            "files (LLMRouterBench's results/bench folder)"
        )
    builder = BatchBuilder(name)
    for (dataset, split, model_dir), files in sorted(groups.items()):
        docs = []
        for f in files:
            doc = read_json(f)
            if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
                raise ImportFormatError(f"{f}: expected an object with a list of 'records'")
            if not doc.get("demo", False):
                docs.append((f, doc))
        if not docs:
            continue  # only demo runs
        # ResultsStorage._get_latest_non_demo_file: the newest by the filename's timestamp (legacy
        # result.json files, which have none, count as oldest here)
        f, doc = max(docs, key=lambda fd: (_stamp(fd[0]), fd[0].name))
        task = ImportOptions.per_task(options.benchmark, dataset) or dataset
        stamp = _STAMP.search(f.name)
        source = builder.source(
            Provenance(
                tool="llmrouterbench",
                task=dataset,
                task_version=split,
                generation={"split": split},
                run_at=from_timestamp(f"{stamp.group(1)}T{stamp.group(2)}") if stamp else None,
                file_name=str(f.relative_to(path)),
                file_sha256=sha256_file(f),
            )
        )
        m = builder.model(options.model_name or str(doc.get("model_name") or model_dir), str(f))
        for i, rec in enumerate(doc["records"]):
            where = f"{f}, record {i + 1}"
            if not isinstance(rec, dict) or "score" not in rec:
                raise ImportFormatError(f"{where}: a record needs a 'score'")
            if rec["score"] is None:
                continue  # RecordResult.score is Optional: not scored
            text = rec.get("origin_query") or rec.get("prompt")
            if not isinstance(text, str) or not text.strip():
                raise ImportFormatError(f"{where}: a record needs an 'origin_query' or 'prompt' text")
            key = question_key(task, rec.get("index"), text, options.key_by)
            q = builder.question(QuestionSpec(key=key, text=text, category=split, benchmark=task), where)
            builder.score(m, q, as_score(rec["score"], where), source, where)
    return builder.build()


# ---------------------------------------------------------------- RouterEval


def read_routereval(path: Path, options: ImportOptions, *, allow_pickle: bool = False) -> ImportBatch:
    """A RouterEval score pickle with its prompt pickle (a `data/` folder or the score file itself)."""
    if path.is_dir():
        pairs = [
            (s, _prompt_file(path / "leaderboard_prompt", s))
            for s in sorted((path / "leaderboard_score").rglob("*.pkl"))
        ]
        if not pairs:
            raise ImportFormatError(f"{path}: no leaderboard_score/*.pkl (RouterEval's data folder)")
    else:
        data = path.parent.parent
        if path.parent.parent.name == "leaderboard_score":  # leaderboard_score/leaderboard_score/x.pkl
            data = data.parent
        pairs = [(path, _prompt_file(data / "leaderboard_prompt", path))]
    name = options.name or "routereval"
    builder = BatchBuilder(name)
    for score_path, prompt_path in pairs:
        if not prompt_path.is_file():
            raise ImportFormatError(f"{score_path}: its prompts {prompt_path} are missing")
        scores = _load_pickle(score_path, allow_pickle)
        prompts = _load_pickle(prompt_path, allow_pickle)
        model_key = "model" if isinstance(scores, dict) and "model" in scores else "models"
        if (
            not isinstance(scores, dict)
            or not isinstance(scores.get("data"), dict)
            or model_key not in scores
        ):
            raise ImportFormatError(f"{score_path}: expected {{'model': [...], 'data': {{subset: ...}}}}")
        if not isinstance(prompts, dict):
            raise ImportFormatError(f"{prompt_path}: expected {{subset: [prompt, ...]}}")
        models = [str(m) for m in scores[model_key]]
        m_idx = [builder.model(m, f"{score_path}, model {j}") for j, m in enumerate(models)]
        source = builder.source(
            Provenance(
                tool="routereval",
                task=score_path.stem.removeprefix("leaderboard_"),
                file_name=score_path.name,
                file_sha256=sha256_files([score_path, prompt_path]),
            )
        )
        for sub, entry in scores["data"].items():
            where_sub = f"{score_path}, subset {sub!r}"
            corr = np.asarray(entry.get("correctness") if isinstance(entry, dict) else None, dtype=np.float64)
            if corr.ndim != 2 or corr.shape[1] != len(models):
                raise ImportFormatError(
                    f"{where_sub}: correctness must be (items, {len(models)} models), got {corr.shape}"
                )
            texts = list(prompts.get(sub, []))
            if len(texts) != corr.shape[0]:
                raise ImportFormatError(
                    f"{where_sub}: {corr.shape[0]} items but {len(texts)} prompts in {prompt_path}"
                )
            bench = ImportOptions.per_task(options.benchmark, str(sub)) or str(sub)
            for i, text in enumerate(texts):
                where = f"{where_sub}, item {i}"
                key = question_key(bench, i, str(text), options.key_by)
                q = builder.question(
                    QuestionSpec(key=key, text=str(text), category=str(sub), benchmark=bench), where
                )
                for j, m in enumerate(m_idx):
                    y = corr[i, j]
                    if not np.isnan(y):
                        builder.score(
                            m, q, as_score(float(y), f"{where}, model {models[j]!r}"), source, where
                        )
    return builder.build()


def _prompt_file(prompt_dir: Path, score_path: Path) -> Path:
    """The prompts of a score pickle: `<stem>_prompt.pkl` as released, else a file of the same name,
    searched in `prompt_dir` and a nested folder of the same name (the archives unpack into one)."""
    for folder in (prompt_dir, prompt_dir / prompt_dir.name):
        for candidate in (f"{score_path.stem}_prompt{score_path.suffix}", score_path.name):
            if (folder / candidate).is_file():
                return folder / candidate
    return prompt_dir / f"{score_path.stem}_prompt{score_path.suffix}"
