"""API keys: creation (secret shown once), lookup in constant time, listing, revocation.

A secret is `fvk_<key_id>_<secret>`: `key_id` (8 random bytes, hex) finds the row, `secret`
(32 random bytes, 256 bits) is checked against the stored SHA-256 with `hmac.compare_digest`.
Only the hash is stored. Keys live in the database and are read on every request, so a revocation
takes effect on the next request on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import Conflict, InvalidInput, NotFound
from service.storage.tables import ApiKey, utcnow

SCOPES = ("verify", "enroll", "manage", "admin")
PREFIX = "fvk"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SECRET_PATTERN = re.compile(r"^fvk_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})$")


@dataclass(frozen=True)
class Principal:
    """Who made the request: the key's name and scopes (never the secret)."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInput("invalid_scopes", f"scopes must be a non-empty subset of {SCOPES}, got {unknown}")
    return scopes


def new_secret() -> str:
    """A fresh key secret (`faceverify keys new-secret`): 64-bit lookup id + 256-bit secret."""
    return f"{PREFIX}_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def create_key(session: Session, name: str, scopes: frozenset[str], secret: str | None = None) -> str:
    """Store a new key and return its secret (the only time it exists outside the caller).

    `secret` lets an operator bring a secret made with `new_secret` (FACEVERIFY_ADMIN_API_KEY for
    the first admin key of a deployment); it must have that exact shape, so it has its entropy."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput("invalid_key_name", "key names are 1-64 characters of A-Za-z0-9_.-")
    parse_scopes(",".join(scopes))
    secret = secret if secret is not None else new_secret()
    match = _SECRET_PATTERN.match(secret)
    if match is None:
        raise InvalidInput("invalid_key_secret", "a key secret must be made by `faceverify keys new-secret`")
    key_id = match.group(1)
    session.add(
        ApiKey(name=name, key_id=key_id, secret_sha256=_digest(secret), scopes=",".join(sorted(scopes)))
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("key_exists", f"an API key named {name!r} already exists") from exc
    return secret


def authenticate(session: Session, presented: str) -> Principal | None:
    """The principal of a valid, unrevoked key, else None. Constant-time on the secret part."""
    match = _SECRET_PATTERN.match(presented)
    if match is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_id == match.group(1)))
    # Compare even when no row was found, so both paths do the same work.
    expected = row.secret_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(presented)) or row is None or row.revoked is not None:
        return None
    return Principal(row.name, row.scope_set)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def revoke_key(session: Session, name: str) -> None:
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise NotFound("unknown_key", f"no API key named {name!r}")
    if row.revoked is None:
        row.revoked = utcnow()
        session.commit()


def any_key_exists(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).limit(1)) is not None
