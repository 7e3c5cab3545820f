"""What every importer produces: questions, models, provenance records and sparse scores.

An importer reads one tool's files and returns an `ImportBatch`; `registry.services.import_batch`
writes it in one transaction. Importers only read and validate: they never touch the database, so
a malformed file fails before anything is written (nothing is half-imported).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from registry.errors import InvalidInput, QuestionConflict

KeyBy = Literal["id", "text"]
TEXT_KEY_PREFIX = "text:"
_SPACE = re.compile(r"\s+")


class ImportFormatError(InvalidInput):
    """A file to import is missing, malformed or inconsistent; the message names the file and record."""


@dataclass(frozen=True)
class Provenance:
    """Where a set of scores came from. Identical provenance (same file, same settings) is stored once."""

    tool: str
    file_sha256: str
    file_name: str | None = None
    tool_version: str | None = None
    task: str | None = None
    task_version: str | None = None
    n_shot: int | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)
    run_at: dt.datetime | None = None

    def fingerprint(self) -> str:
        """sha256 over every identifying field: the idempotency key of an import."""
        ident = [
            self.tool,
            self.tool_version,
            self.task,
            self.task_version,
            self.n_shot,
            dict(self.generation),
            self.run_at.isoformat() if self.run_at else None,
            self.file_sha256,
        ]
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class QuestionSpec:
    key: str
    text: str
    category: str | None = None
    benchmark: str | None = None

    @property
    def text_keyed(self) -> bool:
        """Keyed by the hash of its normalised text (two texts differing in whitespace are one question)."""
        return self.key.startswith(TEXT_KEY_PREFIX)


@dataclass(frozen=True)
class ImportOptions:
    """Choices an importer cannot guess. Per-task maps accept "*" for every task."""

    model_name: str | None = None  # the model's name in the registry (single-model logs)
    metric: Mapping[str, str] = field(default_factory=dict)  # task -> per-sample metric meaning "correct"
    filter: Mapping[str, str] = field(default_factory=dict)  # lm-eval: task -> filter (e.g. strict-match)
    benchmark: Mapping[str, str] = field(default_factory=dict)  # task -> benchmark name in question keys
    key_by: KeyBy = "id"  # "text": key every question by the hash of its normalised text
    name: str | None = None  # source label (matrix formats: the question-key prefix)

    @staticmethod
    def per_task(mapping: Mapping[str, str], task: str) -> str | None:
        return mapping.get(task, mapping.get("*"))


@dataclass
class ImportBatch:
    """Sparse scores: evaluation i is (models[model_idx[i]], questions[question_idx[i]]) from
    provenances[source_idx[i]] with score scores[i] in [0, 1]."""

    name: str
    questions: list[QuestionSpec]
    models: list[str]
    provenances: list[Provenance]
    model_idx: np.ndarray  # (N,) int64
    question_idx: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float32
    source_idx: np.ndarray  # (N,) int64

    @property
    def n_evaluations(self) -> int:
        return int(self.scores.shape[0])


def normalise_text(text: str) -> str:
    """Unicode NFKC with runs of whitespace collapsed and ends stripped: the basis of text keys."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def text_key(text: str) -> str:
    return TEXT_KEY_PREFIX + hashlib.sha256(normalise_text(text).encode()).hexdigest()[:32]


def question_key(benchmark: str, item_id: object, text: str, key_by: KeyBy) -> str:
    """`<benchmark>:<item id>` where the tool gives an id, else the hash of the normalised text."""
    if key_by == "text" or item_id is None or str(item_id).strip() == "":
        return text_key(text)
    return f"{benchmark}:{str(item_id).strip()}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[Path]) -> str:
    """One hash over several files (name and content of each, in name order)."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.name):
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def as_score(value: object, where: str, what: str = "score") -> float:
    """A score in [0, 1] from a bool, number or numeric string; anything else names `where`."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    original = value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "false"):
            return 1.0 if v == "true" else 0.0
        try:
            value = float(v)
        except ValueError:
            raise ImportFormatError(f"{where}: {what} {value!r} is not a number") from None
    if not isinstance(value, int | float):
        raise ImportFormatError(f"{where}: {what} {value!r} is not a number")
    x = float(value)
    if math.isnan(x) or not 0.0 <= x <= 1.0:
        raise ImportFormatError(f"{where}: {what} {original!r} is outside [0, 1]")
    return x


def from_timestamp(value: object) -> dt.datetime | None:
    """A UTC datetime from a unix time or an ISO string (None when absent or unreadable)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        if isinstance(value, dt.datetime):
            out = value
        else:
            out = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return out.replace(tzinfo=dt.UTC) if out.tzinfo is None else out.astimezone(dt.UTC)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ImportFormatError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: not valid JSON ({exc})") from None


class BatchBuilder:
    """Accumulates questions, models, provenance and scores, checking each as it arrives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.questions: list[QuestionSpec] = []
        self._q_index: dict[str, int] = {}
        self._q_where: list[str] = []
        self.models: list[str] = []
        self._m_index: dict[str, int] = {}
        self.provenances: list[Provenance] = []
        self._p_index: dict[str, int] = {}
        self._m: list[int] = []
        self._q: list[int] = []
        self._y: list[float] = []
        self._s: list[int] = []
        self._where: list[str] = []

    def question(self, spec: QuestionSpec, where: str) -> int:
        """Index of the question; the same key with another text is a QuestionConflict naming both places."""
        if not spec.text.strip():
            raise ImportFormatError(f"{where}: question {spec.key!r} has an empty text")
        if len(spec.key) > 300:
            raise ImportFormatError(
                f"{where}: question key {spec.key[:60]!r}... is longer than 300 characters"
            )
        i = self._q_index.get(spec.key)
        if i is None:
            i = self._q_index[spec.key] = len(self.questions)
            self.questions.append(spec)
            self._q_where.append(where)
            return i
        old = self.questions[i]
        same = (
            normalise_text(old.text) == normalise_text(spec.text)
            if spec.text_keyed
            else old.text == spec.text
        )
        if not same:
            raise QuestionConflict(
                f"{where}: question key {spec.key!r} has a different text than at {self._q_where[i]}"
            )
        return i

    def model(self, name: str, where: str) -> int:
        name = name.strip()
        if not name:
            raise ImportFormatError(f"{where}: empty model name")
        if len(name) > 200:
            raise ImportFormatError(f"{where}: model name {name[:60]!r}... is longer than 200 characters")
        i = self._m_index.get(name)
        if i is None:
            i = self._m_index[name] = len(self.models)
            self.models.append(name)
        return i

    def source(self, prov: Provenance) -> int:
        fp = prov.fingerprint()
        i = self._p_index.get(fp)
        if i is None:
            i = self._p_index[fp] = len(self.provenances)
            self.provenances.append(prov)
        return i

    def score(self, model: int, question: int, score: float, source: int, where: str) -> None:
        self._m.append(model)
        self._q.append(question)
        self._y.append(score)
        self._s.append(source)
        self._where.append(where)

    def build(self) -> ImportBatch:
        """The batch; a (model, question) pair scored twice is an error naming both records."""
        if not self._y:
            raise ImportFormatError(f"{self.name}: no scores found")
        m = np.asarray(self._m, dtype=np.int64)
        q = np.asarray(self._q, dtype=np.int64)
        pair = m * len(self.questions) + q
        order = np.argsort(pair, kind="stable")
        dup = np.flatnonzero(pair[order][1:] == pair[order][:-1])
        if dup.size:
            a, b = int(order[dup[0]]), int(order[dup[0] + 1])
            raise ImportFormatError(
                f"{self._where[b]}: model {self.models[m[b]]!r} is scored twice on question "
                f"{self.questions[q[b]].key!r} (also at {self._where[a]}); import the two runs separately"
            )
        return ImportBatch(
            name=self.name,
            questions=self.questions,
            models=self.models,
            provenances=self.provenances,
            model_idx=m,
            question_idx=q,
            scores=np.asarray(self._y, dtype=np.float32),
            source_idx=np.asarray(self._s, dtype=np.int64),
        )


def read_each(
    tool: str,
    found: Iterable[Path],
    read_one: Callable[[Path, ImportOptions, BatchBuilder], None],
    options: ImportOptions,
) -> ImportBatch:
    """One batch from every file or run folder a format found, each read by its `read_one`."""
    builder = BatchBuilder(options.name or tool)
    for item in found:
        read_one(item, options, builder)
    return builder.build()
