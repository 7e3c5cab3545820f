"""Pydantic v2 schemas of the decision endpoints (requests `...Request`, responses `...Read`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from registry.schemas import (
    EvaluationFilter,
    EvaluationIn,
    Label,
    ProvenanceUsed,
    QuestionKey,
    Status,
    storable_text,
)

QueryText = Annotated[str, StringConstraints(max_length=100_000), AfterValidator(storable_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelBrief(BaseModel):
    """The few fields a decision needs to show about a model; `provisional` marks one embedded from too
    few evaluations, so a decision resting on it says so."""

    id: uuid.UUID
    name: str
    status: Status
    provider: str | None = None
    params_b: float | None = None
    price: float | None = Field(
        default=None, description="input_price + output_price, USD per million tokens"
    )
    n_evaluations: int | None = Field(default=None, description="evaluations its embedding was made from")
    provisional: bool = Field(
        default=False, description="embedded from fewer evaluations than settle an embedding"
    )


class ReferenceQueries(Strict):
    """Queries to estimate accuracies on: texts, registered question keys, or (neither) the registry's own."""

    texts: list[QueryText] = Field(default_factory=list, max_length=10_000)
    question_keys: list[QuestionKey] = Field(default_factory=list, max_length=10_000)
    limit: int = Field(
        default=2000, ge=1, le=20_000, description="most registry questions used when none are given"
    )


def _active() -> list[Status]:
    return ["active"]


def _any_status() -> PortfolioFilters:
    return PortfolioFilters(status=[])


class PortfolioFilters(Strict):
    """Which registered models form the pool."""

    status: list[Status] = Field(default_factory=_active)
    provider: list[Label] = Field(default_factory=list)
    family: list[Label] = Field(default_factory=list)
    license: list[Label] = Field(default_factory=list)
    tags: list[Label] = Field(default_factory=list, description="every one of these tags")
    min_params: float | None = Field(default=None, ge=0)
    max_params: float | None = Field(default=None, ge=0)
    min_context_window: int | None = Field(default=None, ge=0)
    max_input_price: float | None = Field(default=None, ge=0)
    max_output_price: float | None = Field(default=None, ge=0)


class PortfolioRequest(Strict):
    """Choose models by count `k`, by a parameter or price budget, or both."""

    method: Literal["k-center", "k-medoids", "coverage-greedy"] = "k-center"
    k: int | None = Field(default=None, ge=1, description="number of models")
    param_budget: float | None = Field(default=None, ge=0, description="summed parameters, billions")
    price_budget: float | None = Field(
        default=None, ge=0, description="summed input+output price, USD / 1M tokens"
    )
    filters: PortfolioFilters = Field(default_factory=PortfolioFilters)
    include: list[uuid.UUID] = Field(default_factory=list, description="models that must be chosen")
    exclude: list[uuid.UUID] = Field(default_factory=list, description="models that must not be chosen")
    reference: ReferenceQueries = Field(default_factory=ReferenceQueries)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    provenance: EvaluationFilter | None = Field(
        default=None,
        description="use only evaluations of this provenance (tool, task, source, run dates): every model "
        "is re-embedded from those alone and models without any are left out",
    )


class CoverageRead(BaseModel):
    """A left-out model and the chosen model that stands in for it."""

    model: ModelBrief
    representative: ModelBrief
    distance: float


class PortfolioRead(BaseModel):
    method: str
    fingerprint: str
    pool_size: int
    chosen: list[ModelBrief]
    left_out: list[CoverageRead]
    coverage_radius: float = Field(description="largest distance from a pool model to its representative")
    mean_distance: float
    total_params_b: float | None
    total_price: float | None
    reference_queries: int
    predicted_accuracy: float | None = Field(description="expected routing hit@1 restricted to the portfolio")
    predicted_accuracy_full_pool: float | None
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


class FallbackRead(BaseModel):
    model: ModelBrief
    distance: float = Field(description="embedding distance")
    predicted_agreement: float | None = Field(description="share of reference queries answered alike")
    behaviour_distance: float | None = Field(
        default=None,
        description="what fallbacks are ranked by (rank_by=behaviour): the item-response distance "
        "combined with the observed disagreement on shared questions, as `similar` ranks",
    )
    shared_questions: int | None = Field(default=None, description="questions both models were scored on")
    observed_disagreement: float | None = Field(default=None, description="their disagreement on those")


class FallbacksRead(BaseModel):
    model_id: uuid.UUID
    fingerprint: str
    reference_queries: int
    items: list[FallbackRead]
    ranked_by: Literal["behaviour", "embedding"] = Field(
        default="embedding",
        description="`behaviour`: vector-search candidates (max(3k, 30)) re-ranked by behaviour_distance",
    )
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


class PortfolioSpec(Strict):
    """Route within a portfolio chosen on the fly."""

    method: Literal["k-center", "k-medoids", "coverage-greedy"] = "k-center"
    k: int | None = Field(default=None, ge=1)
    param_budget: float | None = Field(default=None, ge=0)
    price_budget: float | None = Field(default=None, ge=0)
    filters: PortfolioFilters = Field(default_factory=_any_status)


class RouteRequest(Strict):
    queries: list[QueryText] = Field(min_length=1, max_length=10_000)
    candidates: list[uuid.UUID] | None = Field(
        default=None, description="model ids; default: every embedded model"
    )
    portfolio: PortfolioSpec | None = None
    cost_weight: float = Field(
        default=0.0, ge=0, description="score = P(correct) - cost_weight * price / max price"
    )
    top_k: int = Field(default=3, ge=1, le=100)
    fallbacks: int = Field(
        default=3, ge=0, le=20, description="fallbacks listed when the best model is unavailable"
    )
    keep_queries: bool = Field(
        default=False,
        description="store the query texts with the routing decisions (until the outcome window ends) so "
        "an outcome can be reported without sending the text again; by default only their SHA-256 is kept",
    )
    provenance: EvaluationFilter | None = Field(
        default=None,
        description="use only evaluations of this provenance (tool, task, source, run dates): every model "
        "is re-embedded from those alone and models without any are left out",
    )


class RankedRead(BaseModel):
    model: ModelBrief
    p_correct: float
    score: float
    available: bool


class QueryRouteRead(BaseModel):
    query: int = Field(description="index of the query in the request")
    ranked: list[RankedRead]
    chosen: ModelBrief
    preferred: ModelBrief = Field(description="the best-scoring candidate, available or not")
    fallbacks: list[FallbackRead] = Field(description="nearest available models when `preferred` is down")
    decision_id: uuid.UUID | None = Field(
        default=None,
        description="report whether `chosen` answered well with POST /v1/route/outcomes (within the "
        "retention window); None when the decision could not be recorded (the database was busy)",
    )


class RouteRead(BaseModel):
    fingerprint: str
    candidates: int
    routes: list[QueryRouteRead]
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


class FingerprintRequest(Strict):
    evaluations: list[EvaluationIn] = Field(min_length=1)
    k: int = Field(default=5, ge=1, le=100)
    min_shared: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="fewest shared questions for a verdict on the shared scores (a statistical test that "
        "stays honest on few questions: it answers `undetermined`); below it the verdict uses the embedding "
        "distance, which never says `same` on its own",
    )
    provenance: EvaluationFilter | None = Field(
        default=None,
        description="use only evaluations of this provenance (tool, task, source, run dates): every "
        "registered model is re-embedded from those alone and models without any are left out",
    )


class ThresholdsRead(BaseModel):
    same: float
    related: float
    n_evaluations: int
    source: str = Field(
        description="where the thresholds come from (calibration file or the registry's data)"
    )
    tpr: float | None
    fpr: float | None


VerdictName = Literal["same", "related", "different", "undetermined"]


class ToleranceRead(BaseModel):
    """Thresholds of verdicts on shared-question scores, and the evidence they come from."""

    same: float = Field(
        description="a `same` verdict needs the (1 - alpha) upper bound of the disagreement rate below this"
    )
    related: float = Field(description="disagreement below which a model counts as related")
    alpha: float = Field(
        description="one-sided error of each bound: a model that truly disagrees with the candidate on "
        "`same` or more of the questions is declared `same` with probability at most alpha"
    )
    distinct_pairs: int = Field(description="pairs of distinct registered models the thresholds read")
    distinct_floor: float | None = Field(
        description="disagreement that only 1% of those pairs get below (None: no pairs yet)"
    )


class EvidenceRead(BaseModel):
    """Scores of both sides on the questions they share."""

    shared_questions: int
    disagreements: float = Field(description="sum of |score difference| over the shared questions")
    rate: float
    lower: float = Field(description="one-sided (1 - alpha) lower bound of the disagreement rate")
    upper: float = Field(description="one-sided (1 - alpha) upper bound of the disagreement rate")


class DecisionRead(BaseModel):
    """The overall answer of a fingerprint request and what would settle it."""

    verdict: VerdictName
    model: ModelBrief | None = Field(description="the model the verdict is about (None: no candidate)")
    why: str
    questions_needed: int | None = Field(
        default=None,
        description="shared questions with the best candidate that would decide `same` if the observed "
        "disagreement held (None: more of the same evidence cannot make it `same`)",
    )
    probe_questions: list[str] = Field(
        default_factory=list,
        description="keys of probe-set questions (GET /v1/probes) the candidate was scored on and the "
        "submission lacks: scoring the endpoint on them decides faster",
    )


Basis = Literal["matched", "global"]


class FingerprintMatch(BaseModel):
    model: ModelBrief
    distance: float = Field(
        description="global distance: embedding of all submitted evaluations vs the model's"
    )
    matched_distance: float | None = Field(
        default=None,
        description="both embedded from their scores on exactly the shared questions; None when fewer "
        "than min_shared are shared",
    )
    shared_questions: int = Field(default=0, description="submitted questions the model was also scored on")
    score_disagreement: float | None = Field(
        default=None,
        description="mean |score difference| on the shared questions (no encoder involved), for context",
    )
    verdict: VerdictName | None
    verdict_basis: Basis = Field(
        default="global",
        description="`matched`: a test on the scores of the shared questions; `global`: the embedding "
        "distance alone, calibrated on disjoint samples",
    )
    evidence: EvidenceRead | None = Field(default=None, description="shared-question scores (matched)")
    why: str = Field(default="", description="what the verdict rests on")


class FingerprintRead(BaseModel):
    fingerprint: str
    n_evaluations: int
    min_shared: int
    candidates: int = Field(description="models shortlisted by global distance and judged")
    thresholds: ThresholdsRead | None = Field(description="for global distances")
    matched_thresholds: ThresholdsRead | None = Field(description="for matched distances")
    tolerance: ToleranceRead = Field(description="thresholds of verdicts on shared-question scores")
    decision: DecisionRead
    matches: list[FingerprintMatch]
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


class DuplicatePair(BaseModel):
    a: ModelBrief
    b: ModelBrief
    distance: float = Field(description="global embedding distance")
    matched_distance: float | None = None
    shared_questions: int = 0
    score_disagreement: float | None = Field(
        default=None, description="mean |score difference| on the compared shared questions"
    )
    verdict_basis: Basis = "global"
    evidence: EvidenceRead | None = None
    why: str = ""


class DuplicatesRead(BaseModel):
    fingerprint: str
    thresholds: ThresholdsRead
    matched_thresholds: ThresholdsRead | None
    tolerance: ToleranceRead
    min_shared: int
    pairs_compared: int = Field(description="candidate pairs judged (global distance < related, or near)")
    pairs: list[DuplicatePair]
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


class CategoryRead(BaseModel):
    category: str
    queries: int
    predicted_accuracy_a: float
    predicted_accuracy_b: float


class CompareRead(BaseModel):
    a: ModelBrief
    b: ModelBrief
    fingerprint: str
    distance: float
    verdict: Literal["same", "related", "different"] | None
    reference_queries: int
    predicted_agreement: float | None
    predicted_accuracy_a: float | None
    predicted_accuracy_b: float | None
    categories: list[CategoryRead]
    shared_questions: int = Field(default=0, description="questions both models were scored on")
    observed_disagreement: float | None = Field(
        default=None, description="mean |score difference| on those shared questions (direct evidence)"
    )
    provenance: ProvenanceUsed | None = Field(
        default=None, description="set when the request restricted the evidence to a provenance"
    )


# ---------------------------------------------------------------- drift watch (issue 10)


class ProbeRequest(Strict):
    """An endpoint's scores, answered again (typically on the probe set), to judge against its model's."""

    evaluations: list[EvaluationIn] = Field(min_length=1)
    min_shared: int = Field(
        default=32,
        ge=8,
        le=100_000,
        description="fewest shared questions on which drift may be flagged (fewer: `undetermined`)",
    )
    min_drift: float = Field(
        default=0.10,
        ge=0.0,
        le=1.0,
        description="disagreement with the registered scores that counts as drift: a flag needs the lower "
        "bound at or above max(this, the same-model tolerance). Re-runs at temperature > 0 disagree on "
        "several percent; lower it for deterministic endpoints",
    )


class DriftCheckRead(BaseModel):
    """One re-probe of a model's endpoint judged against its stored scores."""

    id: uuid.UUID
    model: ModelBrief | None = Field(default=None, description="the model (None in a model's own list)")
    created_at: dt.datetime
    verdict: Literal["same", "different", "undetermined"] = Field(
        description="same: still behaves like the registered model; different: drifted (flagged); "
        "undetermined: the shared questions do not decide"
    )
    kind: VerdictName = Field(
        description="the fingerprint verdict of the same evidence: for a drift, `related` (a close variant, "
        "e.g. quantised) or `different` (another model)"
    )
    drifted: bool = Field(description="the model is flagged after this check")
    evidence: EvidenceRead
    tolerance: ToleranceRead
    same_below: float = Field(
        description="`same` needs the upper bound below this: the tolerance's `same`, or half the model's "
        "disagreement with its nearest registered neighbour (cap_registry over all questions, cap_probe over "
        "the re-probed ones) when smaller"
    )
    cap_registry: float | None = Field(default=None, description="half the nearest-neighbour disagreement")
    cap_probe: float | None = Field(
        default=None, description="half the nearest-neighbour disagreement on the re-probed questions"
    )
    flag_at: float = Field(description="`different` needs the lower bound at or above this")
    min_shared: int
    submitted: int = Field(description="scores submitted")
    unshared: int = Field(description="submitted scores on questions the model has no stored score for")
    questions_needed: int | None = Field(
        default=None, description="shared questions that would decide, if the observed rate held"
    )
    probe_questions: list[str] = Field(
        default_factory=list,
        description="probe-set questions the model was scored on and the submission lacks: scoring the "
        "endpoint on them decides an `undetermined`",
    )
    disagreeing: list[str] = Field(
        default_factory=list, description="keys of shared questions scored differently (at most 50)"
    )
    probe_distance: float | None = Field(
        default=None,
        description="embedding distance from the probe scores to the model's vector (informative only: "
        "two samples of one model differ too)",
    )
    why: str


class DriftedModelRead(BaseModel):
    """A model flagged as drifted and its latest check."""

    model: ModelBrief
    drifted_at: dt.datetime
    latest: DriftCheckRead | None


# ---------------------------------------------------------------- route outcomes (issue 10)


class OutcomeRequest(Strict):
    """Whether the model a routing decision chose answered the query well."""

    decision_id: uuid.UUID
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="1 = correct, 0 = wrong")
    question_text: QueryText | None = Field(
        default=None,
        description="the query's text: needed unless the route request kept it (`keep_queries`); it must be "
        "the routed query (its SHA-256 is checked)",
    )


class OutcomeRead(BaseModel):
    """A recorded outcome: the evaluation it became and the model it refined."""

    decision_id: uuid.UUID
    model_id: uuid.UUID
    question: str = Field(description="the question key the outcome is stored under")
    score: float
    created: bool = Field(description="false: this outcome was already recorded (nothing changed)")
    outcome_at: dt.datetime
    n_evaluations: int | None = Field(description="evaluations the model's embedding is now made from")
