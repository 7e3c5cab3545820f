"""Python client of the LOCUS model registry: `LocusClient` and its typed exceptions.

from locus_registry_client import LocusClient
with LocusClient("http://127.0.0.1:8000", api_key=KEY) as lc:
    model = lc.register(name="my-model", provider="acme", evaluations=[...])
    print([s.model.name for s in lc.similar(model.id, k=5).items])
"""

from locus_registry_client.client import DEFAULT_URL, Filters, LocusClient
from locus_registry_client.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    JobFailed,
    JobTimeout,
    LocusError,
    NotFound,
    PayloadTooLarge,
    ResponseError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthenticated,
)

__all__ = [
    "DEFAULT_URL",
    "APIError",
    "BadRequest",
    "Conflict",
    "Filters",
    "Forbidden",
    "InvalidInput",
    "JobFailed",
    "JobTimeout",
    "LocusClient",
    "LocusError",
    "NotFound",
    "PayloadTooLarge",
    "ResponseError",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthenticated",
]
