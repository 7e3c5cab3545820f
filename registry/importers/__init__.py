"""Importers: one module per log format, one interface (`read(path, options) -> ImportBatch`).

Every format goes through the same service, `registry.services.import_batch`, used by the CLI
(`locus-registry import PATH --format F`) and by `POST /v1/imports`. The normalised and EmbedLLM
layouts are read by `encoder.data` (the composition root turns them into a batch with `from_table`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from registry.importers import helm, inspect_logs, lm_eval, matrices
from registry.importers.base import (
    BatchBuilder,
    ImportBatch,
    ImportFormatError,
    ImportOptions,
    Provenance,
    QuestionSpec,
    normalise_text,
    question_key,
    sha256_file,
    sha256_files,
    text_key,
)

__all__ = [
    "FORMATS",
    "PICKLE_FORMATS",
    "BatchBuilder",
    "ImportBatch",
    "ImportFormatError",
    "ImportOptions",
    "Provenance",
    "QuestionSpec",
    "detect_format",
    "from_table",
    "normalise_text",
    "question_key",
    "read",
    "sha256_file",
    "sha256_files",
    "text_key",
]

Reader = Callable[[Path, ImportOptions, bool], ImportBatch]

FORMATS: dict[str, Reader] = {
    "lm-eval": lambda p, o, _: lm_eval.read(p, o),
    "inspect": lambda p, o, _: inspect_logs.read(p, o),
    "helm": lambda p, o, _: helm.read(p, o),
    "wide-csv": lambda p, o, _: matrices.read_wide_csv(p, o),
    "routerbench": lambda p, o, allow: matrices.read_routerbench(p, o, allow_pickle=allow),
    "llmrouterbench": lambda p, o, _: matrices.read_llmrouterbench(p, o),
    "routereval": lambda p, o, allow: matrices.read_routereval(p, o, allow_pickle=allow),
}
# Formats read by encoder.data in the composition root (EvalTable -> from_table).
TABLE_FORMATS = ("normalised", "embedllm")
PICKLE_FORMATS = ("routerbench", "routereval")


def read(
    path: Path, fmt: str, options: ImportOptions | None = None, *, allow_pickle: bool = False
) -> ImportBatch:
    """Read `path` in format `fmt` into a batch (nothing is written)."""
    reader = FORMATS.get(fmt)
    if reader is None:
        raise ImportFormatError(f"unknown format {fmt!r}; one of {sorted([*FORMATS, *TABLE_FORMATS])}")
    try:
        return reader(Path(path), options or ImportOptions(), allow_pickle)
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ImportFormatError(f"{path}: not a readable CSV file ({exc})") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, ImportFormatError):
            raise
        raise ImportFormatError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        # A file of the right kind whose fields have the wrong types (e.g. a number where lm-eval
        # writes an object): refuse it as malformed rather than fail.
        raise ImportFormatError(
            f"{path}: not in the {fmt} layout ({type(exc).__name__}: {exc}); check --format"
        ) from None


def detect_format(path: Path) -> str:
    """Guess the format from the files present (the CLI's default; say --format when it guesses wrong)."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".eval" or (p.suffix == ".json" and p.name.startswith(("20", "log"))):
            return "inspect"
        if p.name.startswith("results_") and p.suffix == ".json":
            return "lm-eval"
        if p.name in ("per_instance_stats.json", "instances.json"):
            return "helm"
        if p.suffix in (".pkl", ".pickle"):
            return "routereval" if p.parent.name == "leaderboard_score" else "routerbench"
        if p.suffix == ".csv":
            with p.open(encoding="utf-8") as f:
                head = f.readline()
            return "routerbench" if "sample_id" in head and "|model_response" in head else "wide-csv"
        raise ImportFormatError(f"{p}: cannot tell the format from the file name; give --format")
    if not p.is_dir():
        raise ImportFormatError(f"{p}: no such file or folder")
    if (p / "questions.csv").is_file() and (p / "labels.csv").is_file():
        return "normalised"
    if any((p / f"{s}.csv").is_file() for s in ("train", "val", "test")):
        return "embedllm"
    if (p / "leaderboard_score").is_dir():
        return "routereval"
    if p.name == "bench" or (p / "bench").is_dir():  # LLMRouterBench's results/bench
        return "llmrouterbench"
    if next(p.rglob("per_instance_stats.json"), None) is not None:
        return "helm"
    if next(p.rglob("results_*.json"), None) is not None:
        return "lm-eval"
    if next(p.rglob("*.eval"), None) is not None:
        return "inspect"
    raise ImportFormatError(f"{p}: not a recognised layout; give --format")


def from_table(
    name: str,
    question_ids: list[str],
    texts: list[str],
    categories: list[str],
    model_names: list[str],
    labels: np.ndarray,
    provenance: Provenance,
) -> ImportBatch:
    """A dense (models x questions) table (NaN = not evaluated) as a batch with one provenance.

    Question keys are `<name>:<question_id>`; ids already prefixed with the name are kept.
    """
    labels = np.asarray(labels, dtype=np.float32)  # (M, Q)
    if labels.shape != (len(model_names), len(question_ids)):
        raise ImportFormatError(
            f"source {name!r}: labels {labels.shape} do not match "
            f"{len(model_names)} models x {len(question_ids)} questions"
        )
    finite = labels[~np.isnan(labels)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ImportFormatError(f"source {name!r}: scores must lie in [0, 1]")
    keys = [q if q.startswith((f"{name}/", f"{name}:")) else f"{name}:{q}" for q in question_ids]
    questions = [
        QuestionSpec(key=k, text=t, category=c or None, benchmark=name)
        for k, t, c in zip(keys, texts, categories, strict=True)
    ]
    mi, qi = np.nonzero(~np.isnan(labels))  # row-major: grouped by model
    return ImportBatch(
        name=name,
        questions=questions,
        models=list(model_names),
        provenances=[provenance],
        model_idx=mi.astype(np.int64),
        question_idx=qi.astype(np.int64),
        scores=labels[mi, qi],
        source_idx=np.zeros(mi.shape[0], dtype=np.int64),
    )
