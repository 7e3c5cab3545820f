"""Pydantic v2 schemas at the boundary (`ThingCreate` / `ThingRead`); ORM rows never leave the registry."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

Status = Literal["active", "unavailable", "deprecated"]
Scope = Literal["read", "write", "admin"]

# Text that a database cannot store is refused here, at the boundary, on SQLite as on PostgreSQL:
# PostgreSQL's text and JSON types cannot hold NUL (U+0000), and a lone surrogate (U+D800-U+DFFF, which a
# JSON "\ud800" escape can carry) is not valid Unicode and cannot be encoded as UTF-8 at all.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Names, labels, keys and tags are one line of printable text: no control characters either.
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_METADATA_DEPTH = 16
MAX_INT = 2**31 - 1  # SQL INTEGER columns (context windows, counts)
MAX_JSON_INT = 2**53  # integers in metadata: exact in every JSON reader (and in PostgreSQL's jsonb)


def _describe(ch: str) -> str:
    code = ord(ch)
    if code == 0:
        return "the NUL character (U+0000), which PostgreSQL cannot store"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X}), which is not valid Unicode text"
    return f"the control character U+{code:04X} (only one line of printable text is allowed here)"


def storable_text(value: str) -> str:
    """`value` unchanged, or ValueError if it holds a character the registry's databases cannot store."""
    found = _UNSTORABLE.search(value)
    if found:
        raise ValueError(f"must not contain {_describe(found.group())}, found at character {found.start()}")
    return value


def one_line_text(value: str) -> str:
    """`value` unchanged, or ValueError if it holds a control character or an unstorable one."""
    found = _NOT_ONE_LINE.search(value)
    if found:
        raise ValueError(f"must not contain {_describe(found.group())}, found at character {found.start()}")
    return value


def storable_json(value: Any, path: str = "metadata", depth: int = 0) -> Any:
    """Check a JSON value for what the databases cannot store (NUL and lone surrogates in keys or
    strings, NaN and infinities, integers beyond 2**53) and for nesting deeper than MAX_METADATA_DEPTH."""
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        _check(storable_text, value, path)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_JSON_INT:
            raise ValueError(f"{path}: integer {value} is beyond +-2**53; send it as a string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check(storable_text, k, f"{path} key {k!r}")
            storable_json(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            storable_json(v, f"{path}[{i}]", depth + 1)
    else:
        raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")
    return value


def _check(check: Any, text: str, path: str) -> None:
    try:
        check(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = storable_json(value, "metadata")
    return result


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(one_line_text)
]
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(one_line_text)
]
QuestionKey = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300), AfterValidator(one_line_text)
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=100_000), AfterValidator(storable_text)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuestionIn(Strict):
    """A question to register: a client key (unique) and its text."""

    key: QuestionKey
    text: Text
    category: Label | None = None
    benchmark: Label | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be blank")
        return v


class QuestionsCreate(Strict):
    questions: list[QuestionIn] = Field(min_length=1)


class QuestionRead(BaseModel):
    id: uuid.UUID
    key: str
    text: str
    category: str | None
    benchmark: str | None
    created_at: dt.datetime


class QuestionsCreated(BaseModel):
    created: int = Field(description="questions newly registered")
    existing: int = Field(description="questions already registered with the same text")
    items: list[QuestionRead]


class EvaluationIn(Strict):
    """One score of the model on a question, named by key; give `text` to register a new question inline."""

    question: QuestionKey
    score: Score
    source: Label | None = None
    text: Text | None = None
    category: Label | None = None
    benchmark: Label | None = None


class EvaluationsAdd(Strict):
    evaluations: list[EvaluationIn] = Field(min_length=1)


class EvaluationSourceRead(BaseModel):
    """Provenance of imported scores: tool, task and settings that produced them, and the file."""

    id: uuid.UUID
    tool: str
    tool_version: str | None
    task: str | None
    task_version: str | None
    n_shot: int | None
    generation: dict[str, Any] = Field(description="generation and scoring settings (metric, filter, ...)")
    run_at: dt.datetime | None = Field(description="when the tool ran, where its log says")
    file_name: str | None
    file_sha256: str
    created_at: dt.datetime


class EvaluationRead(BaseModel):
    question: str
    question_id: uuid.UUID
    score: float
    source: str | None
    created_at: dt.datetime
    provenance: EvaluationSourceRead | None = Field(None, description="null for scores sent without one")


class EvaluationFilter(Strict):
    """Keep only evaluations of this provenance (every given field must match; lists mean any of)."""

    tools: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    source_ids: list[uuid.UUID] = Field(default_factory=list)
    min_run_at: dt.datetime | None = None
    max_run_at: dt.datetime | None = None
    with_provenance: bool | None = Field(
        default=None, description="true: imported scores only; false: the others"
    )

    @field_validator("min_run_at", "max_run_at")
    @classmethod
    def _utc(cls, v: dt.datetime | None) -> dt.datetime | None:
        # A time without a zone is read as UTC (stored run times are UTC).
        return v.replace(tzinfo=dt.UTC) if v is not None and v.tzinfo is None else v

    def is_empty(self) -> bool:
        """True when the filter keeps every evaluation."""
        return not self.model_dump(exclude_defaults=True)


class ProvenanceUsed(BaseModel):
    """What a decision restricted to a provenance rested on (the `provenance` of its response)."""

    filter: EvaluationFilter
    models: int = Field(description="models compared: those with evaluations of this provenance")
    left_out: int = Field(
        description="models the decision would otherwise have considered that have no evaluation of this "
        "provenance (left out)"
    )
    evaluations: int = Field(description="evaluations of this provenance the compared models' vectors used")
    embedding: Literal["recomputed"] = Field(
        default="recomputed",
        description="every compared model was embedded on the fly from only its evaluations of this "
        "provenance (nothing stored); the stored vectors, made from all evaluations, were not used, and "
        "scores on shared questions were read from this provenance only",
    )
    unrestricted: list[str] = Field(
        default_factory=list,
        description="parts of the decision that still read the whole registry (e.g. calibrated thresholds)",
    )


class ProvenanceEmbeddingRead(BaseModel):
    """A model's embedding from only the scores of a given provenance (nothing stored)."""

    model_id: uuid.UUID
    fingerprint: str
    n_evaluations: int
    vector: list[float]


class ModelProvenanceRead(BaseModel):
    """One provenance of a model's scores (its model-card entry): how many scores, their mean."""

    provenance: EvaluationSourceRead | None
    evaluations: int
    mean_score: float


class EvaluationSourceCount(BaseModel):
    source: EvaluationSourceRead
    evaluations: int = Field(description="evaluations that cite this provenance")


class ImportRequest(Strict):
    """Import a file or folder on the server (under LOCUS_IMPORT_ROOT) in one of the importer formats."""

    format: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    model_name: Name | None = None
    metric: dict[str, str] = Field(default_factory=dict, description='task -> metric ("*": every task)')
    filter: dict[str, str] = Field(default_factory=dict, description="lm-eval: task -> filter")
    benchmark: dict[str, str] = Field(default_factory=dict, description="task -> benchmark in question keys")
    key_by: Literal["id", "text"] = "id"
    name: Label | None = None


class ModelFields(Strict):
    provider: Label | None = None
    family: Label | None = None
    base_model: Name | None = None
    params_b: NonNegative | None = Field(None, description="parameter count in billions")
    context_window: Count | None = None
    input_price: NonNegative | None = Field(None, description="USD per million input tokens")
    output_price: NonNegative | None = Field(None, description="USD per million output tokens")
    license: Label | None = None
    tags: list[Label] = Field(default_factory=list, max_length=100)
    metadata: Metadata = Field(default_factory=dict)


class ModelCreate(ModelFields):
    """A model to register, with optional evaluations (its embedding is computed from them)."""

    name: Name
    status: Status = "active"
    evaluations: list[EvaluationIn] = Field(default_factory=list)


class ModelUpdate(Strict):
    """Fields to change; absent fields stay as they are, `null` clears an optional field."""

    name: Name | None = None
    provider: Label | None = None
    family: Label | None = None
    base_model: Name | None = None
    params_b: NonNegative | None = None
    context_window: Count | None = None
    input_price: NonNegative | None = None
    output_price: NonNegative | None = None
    license: Label | None = None
    status: Status | None = None
    tags: list[Label] | None = Field(None, max_length=100)
    metadata: Metadata | None = None

    @field_validator("name", "status", "tags", "metadata")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        # These columns are NOT NULL: explicit null is an error, leaving them out keeps them.
        if v is None:
            raise ValueError("may be omitted but not null")
        return v


class EmbeddingRead(BaseModel):
    fingerprint: str
    n_evaluations: int
    updated_at: dt.datetime
    vector: list[float] | None = None
    provisional: bool = Field(
        default=False,
        description="embedded from fewer evaluations than settle an embedding (see `settle_with`): its "
        "distances move as evaluations arrive",
    )
    settle_with: str | None = Field(default=None, description="what more would settle it")


class ModelRead(BaseModel):
    id: uuid.UUID
    name: str
    provider: str | None
    family: str | None
    base_model: str | None
    params_b: float | None
    context_window: int | None
    input_price: float | None
    output_price: float | None
    license: str | None
    status: Status
    tags: list[str]
    metadata: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    embedding: EmbeddingRead | None = Field(None, description="null until the model has evaluations")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class SimilarModel(BaseModel):
    model: ModelRead
    distance: float = Field(description="Euclidean distance between the two embeddings")
    shared_questions: int = Field(
        default=0,
        description="questions both models were scored on (among at most 512 of this model's, sampled)",
    )
    observed_disagreement: float | None = Field(
        default=None, description="mean |score difference| on those shared questions (direct evidence)"
    )
    profile_distance: float | None = Field(
        default=None,
        description="mean |difference| of the two models' predicted P(correct) on reference questions "
        "(the model's own): an expected disagreement rate that needs no shared questions",
    )
    response_distance: float | None = Field(
        default=None,
        description="item-response distance: expected disagreement from each question's difficulty "
        "(all registered models' scores), each model's ability and per-category strength (its own "
        "scores), on this model's evidence questions in the categories both were scored in; needs no "
        "shared questions and no training",
    )
    behaviour_distance: float | None = Field(
        default=None,
        description="estimated answer-disagreement rate: response_distance (profile_distance where a "
        "model has no scores), worth `prior_questions` questions, and the observed disagreement on "
        "shared questions, weighted by their number; results are ranked by it",
    )


class SimilarRead(BaseModel):
    model_id: uuid.UUID
    fingerprint: str
    items: list[SimilarModel]
    ranked_by: Literal["embedding", "behaviour"] = Field(
        default="embedding",
        description="`behaviour`: re-ranked by behaviour_distance (candidates retrieved by vector search)",
    )
    reference_questions: int | None = Field(
        default=None, description="questions the predicted profiles were compared on"
    )
    prior_questions: float | None = None
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


class ApiKeyCreate(Strict):
    name: Name
    scopes: list[Scope] = Field(min_length=1)


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="the secret; shown once, store it now")


class ReindexReport(BaseModel):
    fingerprint: str
    questions: int
    models: int
    models_without_evaluations: int


class ImportReport(BaseModel):
    source: str
    questions_created: int
    questions_existing: int
    models_created: int
    models_updated: int
    evaluations: int
    sources_created: int = Field(0, description="provenance records newly stored")
    sources_existing: int = Field(0, description="provenance records already stored (imported before)")


class ProbeQuestionRead(BaseModel):
    """One question of the probe set and why it was chosen."""

    key: str
    text: str
    category: str | None
    benchmark: str | None
    information: float = Field(
        description="item information at the registry's average ability: discrimination^2 * p * (1 - p)"
    )
    p_correct: float = Field(description="mean score of the registered models that were scored on it")
    models_scored: int


class ProbeSetRead(BaseModel):
    """A fixed list of registered questions that tell registered models apart (GET /v1/probes)."""

    version: str = Field(description="digest of the chosen keys: the same registry state gives the same set")
    n: int
    requested: int
    models: int = Field(description="registered models whose scores the choice read")
    eligible_questions: int = Field(description="questions scored by enough models to be judged")
    method: str
    questions: list[ProbeQuestionRead]


# ---------------------------------------------------------------- embedding history (issue 10)


class HistoryEntryRead(BaseModel):
    """One (re-)embedding of a model."""

    fingerprint: str = Field(description="the encoder that made the vector")
    serving: bool = Field(description="made by the encoder in service")
    n_evaluations: int
    reason: str = Field(description="register, evaluations, import, reindex, promote or probe")
    created_at: dt.datetime
    distance_prev: float | None = Field(
        description="Euclidean distance to the model's previous vector under the same encoder (None: first)"
    )
    relative_prev: float | None = Field(
        default=None,
        description="distance_prev over the registry's nearest-neighbour scale (serving encoder only): 1.0 "
        "is as far as a typical model is from its nearest registered neighbour",
    )


class HistorySummaryRead(BaseModel):
    """How far the model moved under the serving encoder, and why (re-probes apart: they describe the
    endpoint, not a new vector of the model)."""

    embeddings: int = Field(description="embeddings recorded under the serving encoder")
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None
    n_evaluations_first: int | None = None
    n_evaluations_last: int | None = None
    net_distance: float | None = Field(default=None, description="first to latest vector, Euclidean")
    net_relative: float | None = Field(default=None, description="net_distance over the neighbour scale")
    path_length: float | None = Field(default=None, description="sum of the steps between embeddings")
    reasons: dict[str, int] = Field(default_factory=dict, description="re-embeddings by reason")
    moved_by: dict[str, float] = Field(default_factory=dict, description="path length by reason")
    probes: int = Field(
        default=0, description="re-probes recorded (their embeddings do not change the model's vector)"
    )
    other_encoders: int = Field(default=0, description="other encoders the model has history under")
    why: str


class HistoryRead(BaseModel):
    """A page of a model's embedding history (newest first) and its summary."""

    model_id: uuid.UUID
    fingerprint: str = Field(description="the serving encoder")
    neighbour_scale: float | None = Field(
        description="median distance from a model to its nearest registered neighbour (serving encoder)"
    )
    summary: HistorySummaryRead
    items: list[HistoryEntryRead]
    total: int
    limit: int
    offset: int


# ---------------------------------------------------------------- background jobs (registry.jobs)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobCreate(Strict):
    """A job to run in the background: its kind (GET /v1/jobs/kinds lists them) and its parameters."""

    kind: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    params: Metadata = Field(default_factory=dict, description="the kind's parameters (validated at submit)")


class JobRead(BaseModel):
    """A job's state and progress; `result` is set once it succeeded, `error` once it failed."""

    id: uuid.UUID
    kind: str
    state: JobState
    params: dict[str, Any]
    stage: str | None = Field(description="what the job is doing now (e.g. questions, embeddings)")
    done: int = Field(description="items of the current stage done")
    total: int | None = Field(description="items of the current stage in all (None: unknown)")
    rate: float | None = Field(description="items per second in the current stage")
    eta_s: float | None = Field(description="seconds until the current stage is done, at the current rate")
    log: list[str] = Field(description="the last lines the job logged (up to 200)")
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    attempts: int = Field(description="times a worker started it (above 1: an earlier worker died)")
    worker: str | None
    created_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None


class JobKindRead(BaseModel):
    """A job kind this server runs, the scope it needs and its parameters' JSON schema."""

    kind: str
    scope: Scope
    description: str
    params_schema: dict[str, Any]


class ImportJobParams(Strict):
    """Parameters of an `import` job: a file or folder on the server (`path`, under LOCUS_IMPORT_ROOT)
    or a staged upload (`upload`, set by POST /v1/jobs/imports/upload), read like POST /v1/imports."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    upload: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = Field(
        default=None, description="a staged upload's id"
    )
    local: bool = Field(
        default=False, description="a path on the CLI's machine (set by `locus-registry import` only)"
    )
    format: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = Field(
        default=None, description="one of the import formats; None = detected from the files"
    )
    model_name: Name | None = None
    metric: dict[str, str] = Field(default_factory=dict, description='task -> metric ("*": every task)')
    filter: dict[str, str] = Field(default_factory=dict, description="lm-eval: task -> filter")
    benchmark: dict[str, str] = Field(default_factory=dict, description="task -> benchmark in question keys")
    key_by: Literal["id", "text"] = "id"
    name: Label | None = None
    limit_models: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None


EncoderStatus = Literal["candidate", "building", "serving", "previous", "retired", "failed"]


class EncoderRead(BaseModel):
    """A registered encoder checkpoint and where it stands (exactly one is `serving`)."""

    id: uuid.UUID
    fingerprint: str
    path: str
    status: EncoderStatus
    generation: int = Field(description="which build of this encoder's vectors is (or was last) in service")
    report: dict[str, Any] = Field(description="its training / comparison report, when it has one")
    created_at: dt.datetime
    promoted_at: dt.datetime | None = Field(description="when its last switch into service completed")


class EncoderCreate(BaseModel):
    """Register a checkpoint folder readable by the server as a candidate encoder."""

    model_config = ConfigDict(extra="forbid")

    path: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    report: dict[str, Any] | None = None


class SwitchReport(BaseModel):
    """What a promotion, rollback or reindex did: the collections built, the models embedded, timings."""

    fingerprint: str
    generation: int
    previous_fingerprint: str | None
    previous_generation: int | None
    models: int
    questions: int
    caught_up: int = Field(description="models re-embedded because they changed during the build")
    full_build: bool
    seconds: float
