"""/v1/probes: the probe set every endpoint should be scored on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ContainerDep, ReadAuth
from registry.schemas import ProbeSetRead
from registry.services.probes import probe_set

router = APIRouter(prefix="/v1/probes", tags=["probes"])


@router.get("")
def get_probes(
    container: ContainerDep, _: ReadAuth, n: Annotated[int, Query(ge=1, le=10_000)] = 128
) -> ProbeSetRead:
    """A fixed, versioned list of registered questions chosen to tell registered models apart.

    Score a new endpoint on these and register or fingerprint it with those scores: comparisons then
    rest on shared questions (direct evidence) instead of embeddings of different samples.
    """
    return probe_set(container, n=n)
