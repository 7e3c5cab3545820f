"""Evaluation data: loaders for the normalised layout and EmbedLLM's layout, and splits.

A source is a dense (models x questions) label matrix with NaN where a model was not evaluated.
Scores are in [0, 1] (0/1 correctness in the shipped data; soft scores are accepted).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

csv.field_size_limit(2**31 - 1)


class DataFormatError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file and row."""


@dataclass
class EvalSource:
    """One benchmark source: questions, models and the (M, Q) score matrix (NaN = not evaluated)."""

    name: str
    question_ids: list[str]
    texts: list[str]
    categories: list[str]
    model_names: list[str]
    labels: np.ndarray  # (M, Q) float32, NaN where missing
    # Optional predefined question split ("train"/"val"/"test" per question), e.g. EmbedLLM's files.
    predefined_split: list[str] | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, q = self.labels.shape
        if q != len(self.question_ids) or m != len(self.model_names):
            raise DataFormatError(
                f"{self.name}: label matrix {self.labels.shape} does not match "
                f"{len(self.model_names)} models x {len(self.question_ids)} questions"
            )

    @property
    def n_models(self) -> int:
        return len(self.model_names)

    @property
    def n_questions(self) -> int:
        return len(self.question_ids)

    def observed(self) -> np.ndarray:
        """(M, Q) bool: True where a score exists."""
        return ~np.isnan(self.labels)


def _rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) from a CSV file, checking the header names the required columns."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(f"{path}: header {header} lacks column(s) {missing}")
        for row in reader:
            if None in row or any(row.get(c) is None for c in required):
                raise DataFormatError(f"{path}, line {reader.line_num}: wrong number of fields")
            yield reader.line_num, row


def parse_score(value: str, path: Path, line: int) -> float:
    """Parse one score, accepting 0/1, true/false and floats in [0, 1]."""
    v = value.strip().lower()
    if v in ("true", "false"):
        return 1.0 if v == "true" else 0.0
    try:
        x = float(v)
    except ValueError:
        raise DataFormatError(f"{path}, line {line}: score {value!r} is not a number") from None
    if not (0.0 <= x <= 1.0) or math.isnan(x):
        raise DataFormatError(f"{path}, line {line}: score {value!r} is outside [0, 1]")
    return x


def load_normalised(path: Path | str, name: str | None = None) -> EvalSource:
    """Load a folder with `questions.csv` (question_id,text,category) and `labels.csv`."""
    root = Path(path)
    qids: list[str] = []
    texts: list[str] = []
    cats: list[str] = []
    index: dict[str, int] = {}
    qpath = root / "questions.csv"
    for line, row in _rows(qpath, ("question_id", "text")):
        qid = row["question_id"].strip()
        if not qid:
            raise DataFormatError(f"{qpath}, line {line}: empty question_id")
        if qid in index:
            raise DataFormatError(f"{qpath}, line {line}: duplicate question_id {qid!r}")
        if not row["text"].strip():
            raise DataFormatError(f"{qpath}, line {line}: empty text for question {qid!r}")
        index[qid] = len(qids)
        qids.append(qid)
        texts.append(row["text"])
        cats.append((row.get("category") or "").strip() or "uncategorised")
    if not qids:
        raise DataFormatError(f"{qpath}: no questions")

    models: dict[str, int] = {}
    triples: list[tuple[int, int, float]] = []
    lpath = root / "labels.csv"
    for line, row in _rows(lpath, ("model", "question_id", "label")):
        qid = row["question_id"].strip()
        if qid not in index:
            raise DataFormatError(f"{lpath}, line {line}: unknown question_id {qid!r}")
        model = row["model"].strip()
        if not model:
            raise DataFormatError(f"{lpath}, line {line}: empty model name")
        mi = models.setdefault(model, len(models))
        triples.append((mi, index[qid], parse_score(row["label"], lpath, line)))
    if not triples:
        raise DataFormatError(f"{lpath}: no labels")
    labels = np.full((len(models), len(qids)), np.nan, dtype=np.float32)
    for mi, qi, y in triples:  # a repeated (model, question) keeps the last score
        labels[mi, qi] = y
    return EvalSource(
        name=name or root.name,
        question_ids=qids,
        texts=texts,
        categories=cats,
        model_names=list(models),
        labels=labels,
    )


EMBEDLLM_COLUMNS = ("prompt_id", "model_id", "label", "prompt")


def load_embedllm(path: Path | str, name: str = "embedllm") -> EvalSource:
    """Load EmbedLLM's layout: train.csv / val.csv / test.csv (+ model_order.csv, question_order.csv).

    Columns: prompt_id, model_id, category_id, label, prompt, model_name, category. Duplicate
    (prompt_id, model_id) rows exist in the published files: the first one is kept. The file a
    question comes from becomes its predefined split.
    """
    root = Path(path)
    model_names: dict[int, str] = {}
    order = root / "model_order.csv"
    if order.is_file():
        for line, row in _rows(order, ("model_id", "model_name")):
            try:
                model_names[int(row["model_id"])] = row["model_name"]
            except ValueError:
                raise DataFormatError(
                    f"{order}, line {line}: model_id {row['model_id']!r} is not an integer"
                ) from None

    q_index: dict[int, int] = {}
    texts: list[str] = []
    cats: list[str] = []
    splits: list[str] = []
    m_index: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    triples: list[tuple[int, int, float]] = []
    found = False
    for split in ("train", "val", "test"):
        fpath = root / f"{split}.csv"
        if not fpath.is_file():
            continue
        found = True
        for line, row in _rows(fpath, EMBEDLLM_COLUMNS):
            try:
                pid, mid = int(row["prompt_id"]), int(row["model_id"])
            except ValueError:
                raise DataFormatError(f"{fpath}, line {line}: prompt_id/model_id must be integers") from None
            if (pid, mid) in seen:
                continue
            seen.add((pid, mid))
            if pid not in q_index:
                q_index[pid] = len(texts)
                texts.append(row["prompt"])
                cats.append((row.get("category") or "").strip() or "uncategorised")
                splits.append(split)
            if mid not in m_index:
                m_index[mid] = len(m_index)
                if mid not in model_names:
                    model_names[mid] = (row.get("model_name") or "").strip() or f"model_{mid}"
            triples.append((m_index[mid], q_index[pid], parse_score(row["label"], fpath, line)))
    if not found:
        raise DataFormatError(f"{root}: none of train.csv, val.csv, test.csv found")
    labels = np.full((len(m_index), len(texts)), np.nan, dtype=np.float32)
    for mi, qi, y in triples:
        labels[mi, qi] = y
    mids = sorted(m_index, key=m_index.__getitem__)
    pids = sorted(q_index, key=q_index.__getitem__)
    return EvalSource(
        name=name,
        question_ids=[str(p) for p in pids],
        texts=texts,
        categories=cats,
        model_names=[model_names[m] for m in mids],
        labels=labels,
        predefined_split=splits,
    )


def load_source(path: Path | str, name: str | None = None) -> EvalSource:
    """Load either layout, detected from the files present."""
    root = Path(path)
    if (root / "questions.csv").is_file() and (root / "labels.csv").is_file():
        return load_normalised(root, name)
    if any((root / f"{s}.csv").is_file() for s in ("train", "val", "test")):
        return load_embedllm(root, name or root.name)
    raise DataFormatError(
        f"{root}: not a recognised layout "
        "(expected questions.csv + labels.csv, or EmbedLLM's train/val/test.csv)"
    )


@dataclass(frozen=True)
class QuestionSplit:
    """Indices of train / val / test questions in one source."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_questions(
    source: EvalSource, *, val: float = 0.1, test: float = 0.2, seed: int = 0
) -> QuestionSplit:
    """Split questions into train/val/test, stratified by category (every category in every split).

    A predefined split (EmbedLLM's files) is used as it is.
    """
    if source.predefined_split is not None:
        arr = np.asarray(source.predefined_split)
        return QuestionSplit(*(np.flatnonzero(arr == s) for s in ("train", "val", "test")))
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    cats = np.asarray(source.categories)
    for cat in sorted(set(source.categories)):
        idx = np.flatnonzero(cats == cat)
        rng.shuffle(idx)
        n_test = round(len(idx) * test)
        n_val = round(len(idx) * val)
        parts["test"].extend(idx[:n_test].tolist())
        parts["val"].extend(idx[n_test : n_test + n_val].tolist())
        parts["train"].extend(idx[n_test + n_val :].tolist())
    return QuestionSplit(*(np.sort(np.asarray(parts[s], dtype=np.int64)) for s in ("train", "val", "test")))


def holdout_models(source: EvalSource, *, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean (M,) mask of models held out from training (at least one when fraction > 0)."""
    rng = np.random.default_rng(seed + 7919)
    n = max(1, round(source.n_models * fraction)) if fraction > 0 else 0
    mask = np.zeros(source.n_models, dtype=bool)
    mask[rng.choice(source.n_models, size=n, replace=False)] = True
    return mask
