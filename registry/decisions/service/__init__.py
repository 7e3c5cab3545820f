"""Decision use cases on the registry, one module per decision: portfolio, fallbacks, route, fingerprint,
duplicates, compare (shared pool loading in `pool`, fingerprint thresholds in `thresholds`).

Vector work goes through the `VectorIndex` port (scans and filtered nearest-neighbour queries), the
encoder through the `Embedder` port, SQL through `registry.repositories`. All use cases are reads:
nothing here commits.

Each use case's function shares its module's name, so after this package is imported
`service.portfolio` (and likewise fallbacks, fingerprint, duplicates, compare) is the function; import
a module's other names from the module itself (`registry.decisions.service.fingerprint`).
"""

from registry.decisions.service.compare import compare
from registry.decisions.service.duplicates import duplicates
from registry.decisions.service.fallbacks import fallbacks
from registry.decisions.service.fingerprint import SHORTLIST, VERDICT_RANK, Judgement, fingerprint, judge
from registry.decisions.service.pool import (
    Pool,
    brief,
    check_queries,
    load_pool,
    price_of,
    reference_queries,
    require_models,
    require_vectors,
    to_filter,
)
from registry.decisions.service.portfolio import portfolio
from registry.decisions.service.route import route_queries
from registry.decisions.service.thresholds import (
    CALIBRATION_FILE,
    ThresholdProvider,
    by_question_key,
    calibrate_from_registry,
    calibrate_matched_from_registry,
    calibration_models,
    thresholds_read,
)

__all__ = [
    "CALIBRATION_FILE",
    "SHORTLIST",
    "VERDICT_RANK",
    "Judgement",
    "Pool",
    "ThresholdProvider",
    "brief",
    "by_question_key",
    "calibrate_from_registry",
    "calibrate_matched_from_registry",
    "calibration_models",
    "check_queries",
    "compare",
    "duplicates",
    "fallbacks",
    "fingerprint",
    "judge",
    "load_pool",
    "portfolio",
    "price_of",
    "reference_queries",
    "require_models",
    "require_vectors",
    "route_queries",
    "thresholds_read",
    "to_filter",
]
