"""Domain errors of the decision use cases; each message names the offending item.

They extend the registry's error tree (`registry.errors`), which `api.errors` maps to HTTP by MRO:
an unknown model id is a NotFound (404), a model without embedding an EmbeddingMissing (409), and
every other bad request an InvalidInput (422). `DecisionError` marks them all as coming from here.
"""

from __future__ import annotations

from registry.errors import EmbeddingMissing, InvalidInput, NotFound, RegistryError


class DecisionError(RegistryError):
    """Base class: a decision request cannot be answered as asked."""


class UnknownModelError(DecisionError, NotFound):
    """One or more model ids are not registered."""


class EmptyCandidatesError(DecisionError, InvalidInput):
    """No model is left to choose from after filters, constraints and exclusions."""


class BudgetError(DecisionError, InvalidInput):
    """A parameter or price budget that no eligible model fits into."""


class PortfolioSizeError(DecisionError, InvalidInput):
    """A portfolio size k below 1 or larger than the eligible pool."""


class EmptyQueryError(DecisionError, InvalidInput):
    """A query text that is empty or whitespace only."""


class InvalidDecisionInput(DecisionError, InvalidInput):
    """Any other malformed argument (shapes, negative weights, contradictory options)."""


class NotEmbeddedError(DecisionError, EmbeddingMissing):
    """A model has no embedding yet (it was registered without evaluations, or a reindex is due)."""
