"""/v1/keys: API key management (admin scope)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import AdminAuth, ContainerDep
from registry import services
from registry.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201)
def create_key(body: ApiKeyCreate, container: ContainerDep, _: AdminAuth) -> ApiKeyCreated:
    """Create a key; the secret is in this response only."""
    return services.create_api_key(container, body.name, body.scopes)


@router.get("")
def list_keys(container: ContainerDep, _: AdminAuth) -> list[ApiKeyRead]:
    return services.list_api_keys(container)


@router.delete("/{key_id}")
def revoke_key(key_id: uuid.UUID, container: ContainerDep, _: AdminAuth) -> ApiKeyRead:
    """Revoke a key; it stops working at once."""
    return services.revoke_api_key(container, key_id)
