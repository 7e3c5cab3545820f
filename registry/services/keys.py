"""API keys: create (the secret is shown once), authenticate with a scope, list, revoke.

Keys are 32 random bytes, so a plain SHA-256 is a safe stored form (no salt or slow hash needed:
there is nothing to brute-force). Scopes nest: admin > write > read.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from registry.schemas import ApiKeyCreated, ApiKeyRead, Scope
from registry.services.context import SessionSource
from registry.tables import SCOPES, ApiKeyRow, utcnow

KEY_PREFIX = "lr_"
_RANK = {"read": 0, "write": 1, "admin": 2}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _read(row: ApiKeyRow | repo.ApiKeyColumns) -> ApiKeyRead:
    return ApiKeyRead(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes.split(),  # type: ignore[arg-type]  # only SCOPES are ever stored
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create_api_key(ctx: SessionSource, name: str, scopes: Sequence[str]) -> ApiKeyCreated:
    """Create a key; the returned `key` is the only time the secret is visible."""
    bad = [sc for sc in scopes if sc not in SCOPES]
    if bad:
        raise InvalidInput(f"unknown scope(s) {bad}; choose from {list(SCOPES)}")
    if not scopes:
        raise InvalidInput(f"give at least one scope out of {list(SCOPES)}")
    if not name.strip():
        raise InvalidInput("the key name must not be blank")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with ctx.session_factory() as s, s.begin():
        row = repo.add_api_key(
            s,
            ApiKeyRow(
                id=uuid.uuid4(),
                name=name.strip(),
                prefix=secret[:10],
                key_hash=hash_key(secret),
                scopes=" ".join(sorted(set(scopes), key=_RANK.__getitem__)),
            ),
        )
        return ApiKeyCreated(**_read(row).model_dump(), key=secret)


def authenticate(ctx: SessionSource, key: str | None, scope: Scope) -> ApiKeyRead:
    """The key's record if it exists, is not revoked and grants `scope` (directly or by a higher one)."""
    if not key:
        raise Unauthenticated("missing API key: send `Authorization: Bearer <key>`")
    with ctx.session_factory() as s:
        return authenticate_in(s, key, scope)


def authenticate_in(s: Session, key: str, scope: Scope) -> ApiKeyRead:
    """`authenticate` in the caller's session (a check that reads more in the same one)."""
    row = repo.get_api_key_by_hash(s, hash_key(key))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated(f"API key {key[:10]}... is unknown or revoked")
    if max(_RANK[sc] for sc in row.scopes.split()) < _RANK[scope]:
        raise Forbidden(f"API key {row.prefix}... ({row.name!r}) lacks the {scope!r} scope")
    return _read(row)


def list_api_keys(ctx: SessionSource) -> list[ApiKeyRead]:
    """All keys (without secrets), oldest first."""
    with ctx.session_factory() as s:
        return [_read(r) for r in repo.list_api_keys(s)]


def revoke_api_key(ctx: SessionSource, key_id: uuid.UUID) -> ApiKeyRead:
    """Revoke a key (idempotent); it stops working at once."""
    with ctx.session_factory() as s, s.begin():
        row = repo.get_api_key(s, key_id)
        if row is None:
            raise NotFound(f"API key {key_id} does not exist")
        if row.revoked_at is None:
            repo.revoke_api_key(s, row, utcnow())
        return _read(row)
