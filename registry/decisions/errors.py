"""Domain errors of the decision use cases; each message names the offending item.

They carry no HTTP; `api` maps them to status codes (unknown ids -> 404, the rest -> 422).
"""

from __future__ import annotations


class DecisionError(Exception):
    """Base class: a decision request cannot be answered as asked."""


class UnknownModelError(DecisionError):
    """One or more model ids are not registered."""


class EmptyCandidatesError(DecisionError):
    """No model is left to choose from after filters, constraints and exclusions."""


class BudgetError(DecisionError):
    """A parameter or price budget that no eligible model fits into."""


class PortfolioSizeError(DecisionError):
    """A portfolio size k below 1 or larger than the eligible pool."""


class EmptyQueryError(DecisionError):
    """A query text that is empty or whitespace only."""


class InvalidDecisionInput(DecisionError):
    """Any other malformed argument (shapes, negative weights, contradictory options)."""


class NotEmbeddedError(DecisionError):
    """A model has no embedding yet (it was registered without evaluations)."""
