"""API keys: creation (secret shown once), lookup in constant time, listing, revocation.

A secret is `fvk_<key_id>_<secret>`: `key_id` (8 random bytes, hex) finds the row, `secret`
(32 random bytes, 256 bits) is checked against the stored SHA-256 with `hmac.compare_digest`.
Only the hash is stored. Keys live in the database and are read on every request, so a revocation
takes effect on the next request on every replica.

A key may be restricted to user ids starting with a prefix (`keys create --user-prefix kiosk1-`:
one deployment serving several sites; issue 18). The restriction is stored with the scopes, as the
token `user:<prefix>`, so it needs no schema change and travels wherever the scopes do.

`Authenticator` is what the HTTP layer calls before it admits a request or reads its body: a
malformed key costs a regular-expression match, a well-formed key that was refused a moment ago
costs a SHA-256 and a dictionary lookup (refusals are remembered for `refused_ttl_s`), and only a
new candidate reaches the database. Accepted keys are never cached, so revocation still holds on
the next request on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.security import audit
from service.storage.tables import ApiKey, utcnow

SCOPES = ("verify", "enroll", "manage", "admin")
PREFIX = "fvk"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SECRET_PATTERN = re.compile(r"^fvk_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})$")
USER_TOKEN = "user:"  # scopes token carrying a key's user-id prefix


@dataclass(frozen=True)
class Principal:
    """Who made the request: the key's name and scopes (never the secret)."""

    name: str
    scopes: frozenset[str]
    user_prefix: str | None = None  # set: the key acts only on user ids that start with it

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def require_user(self, user_id: str) -> None:
        """403 `user_not_allowed` for a user id outside the key's prefix (a kiosk's key cannot
        enrol, verify, read or delete another site's users)."""
        if self.user_prefix is not None and not user_id.startswith(self.user_prefix):
            raise Forbidden(
                "user_not_allowed", f"this API key acts only on user ids starting with {self.user_prefix!r}"
            )


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


def create_key(
    session: Session,
    name: str,
    scopes: frozenset[str],
    secret: str | None = None,
    user_prefix: str | None = None,
) -> str:
    """Store a new key and return its secret (the only time it exists outside the caller).

    `secret` lets an operator bring a secret made with `new_secret` (FACEVERIFY_ADMIN_API_KEY for
    the first admin key of a deployment); it must have that exact shape, so it has its entropy.
    `user_prefix` restricts the key to user ids starting with it (not for admin keys)."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput("invalid_key_name", "key names are 1-64 characters of A-Za-z0-9_.-")
    parse_scopes(",".join(scopes))
    tokens = sorted(scopes)
    if user_prefix is not None:
        if not NAME_PATTERN.match(user_prefix) or "admin" in scopes:
            raise InvalidInput(
                "invalid_user_prefix", "a user prefix is 1-64 characters of A-Za-z0-9_.- (not for admin keys)"
            )
        tokens.append(USER_TOKEN + user_prefix)
    secret = secret if secret is not None else new_secret()
    match = _SECRET_PATTERN.match(secret)
    if match is None:
        raise InvalidInput("invalid_key_secret", "a key secret must be made by `faceverify keys new-secret`")
    key_id = match.group(1)
    session.add(
        ApiKey(name=name, key_id=key_id, secret_sha256=_digest(secret), scopes=",".join(tokens))
    )
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("key_exists", f"an API key named {name!r} already exists") from exc
    # A request's audit entry goes into this transaction: no audit, no key (the CLI audits itself).
    audit.record_in(session, "ok", None, {"name": name, "scopes": tokens})
    session.commit()
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
    return principal_of(row)


def principal_of(row: ApiKey) -> Principal:
    """The key's scopes, and its user-id prefix from the `user:` token, if any."""
    tokens = row.scope_set
    prefixes = [t[len(USER_TOKEN) :] for t in tokens if t.startswith(USER_TOKEN)]
    scopes = frozenset(t for t in tokens if not t.startswith(USER_TOKEN))
    return Principal(row.name, scopes, prefixes[0] if prefixes else None)


class Authenticator:
    """`authenticate` with a short memory of refusals (see the module docstring).

    A refused key may become valid only if someone creates a key with that exact secret
    (`keys create --secret`, `ADMIN_API_KEY`) after it was presented: it is then accepted at most
    `refused_ttl_s` later. The memory is bounded (`max_refused` digests, oldest dropped first), so
    a flood of distinct bogus keys costs one lookup each and no unbounded memory."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        refused_ttl_s: float = 10.0,
        max_refused: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.session_factory = session_factory
        self.refused_ttl_s = refused_ttl_s
        self.max_refused = max_refused
        self._clock = clock
        self._refused: OrderedDict[str, float] = OrderedDict()  # digest -> expiry
        self._lock = threading.Lock()
        self.lookups = 0  # database lookups made (tests and metrics read it)

    def principal(self, presented: str) -> Principal | None:
        if _SECRET_PATTERN.match(presented) is None:
            return None
        digest = _digest(presented)
        now = self._clock()
        with self._lock:
            expiry = self._refused.get(digest)
            if expiry is not None and expiry > now:
                return None
        with self.session_factory() as session:
            self.lookups += 1
            found = authenticate(session, presented)
        if found is None:
            with self._lock:
                self._refused[digest] = now + self.refused_ttl_s
                self._refused.move_to_end(digest)
                while len(self._refused) > self.max_refused:
                    self._refused.popitem(last=False)
        return found


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def revoke_key(session: Session, name: str) -> None:
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise NotFound("unknown_key", f"no API key named {name!r}")
    if row.revoked is None:
        row.revoked = utcnow()
    audit.record_in(session, "ok", None, {"name": name})
    session.commit()


def any_key_exists(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).limit(1)) is not None
