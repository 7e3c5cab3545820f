"""Decisions on top of model embeddings: portfolios, fallbacks, routing, fingerprints, comparisons.

The algorithms here are pure numpy/scipy (+ the `kmedoids` package) on index-based arrays; the
use cases that read the registry live in `registry.decisions.service`.
"""

from registry.decisions.compare import CategoryAccuracy, Comparison, compare_models
from registry.decisions.errors import (
    BudgetError,
    DecisionError,
    EmptyCandidatesError,
    EmptyQueryError,
    InvalidDecisionInput,
    NotEmbeddedError,
    PortfolioSizeError,
    UnknownModelError,
)
from registry.decisions.fallback import Fallback, rank_fallbacks
from registry.decisions.fingerprint import (
    CalibrationSample,
    FingerprintThresholds,
    Verdict,
    calibrate,
    calibrate_matched,
    calibrate_thresholds,
    constant_rows,
    distinct_matched_distances,
    flipped_distances,
    load_calibration,
    matched_distances,
    sample_pair_distances,
    save_calibration,
)
from registry.decisions.portfolio import METHODS, Portfolio, pairwise_distances, select_portfolio
from registry.decisions.routing import (
    QueryRoute,
    RankedCandidate,
    normalised_prices,
    predicted_agreement,
    predicted_routing_accuracy,
    route,
)

__all__ = [
    "METHODS",
    "BudgetError",
    "CalibrationSample",
    "CategoryAccuracy",
    "Comparison",
    "DecisionError",
    "EmptyCandidatesError",
    "EmptyQueryError",
    "Fallback",
    "FingerprintThresholds",
    "InvalidDecisionInput",
    "NotEmbeddedError",
    "Portfolio",
    "PortfolioSizeError",
    "QueryRoute",
    "RankedCandidate",
    "UnknownModelError",
    "Verdict",
    "calibrate",
    "calibrate_matched",
    "calibrate_thresholds",
    "compare_models",
    "constant_rows",
    "distinct_matched_distances",
    "flipped_distances",
    "load_calibration",
    "matched_distances",
    "normalised_prices",
    "pairwise_distances",
    "predicted_agreement",
    "predicted_routing_accuracy",
    "rank_fallbacks",
    "route",
    "sample_pair_distances",
    "save_calibration",
    "select_portfolio",
]
