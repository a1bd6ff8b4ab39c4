"""Tables of the security package (migration 0002_security mirrors them).

They share `service.db_models.Base` so that one metadata describes the whole schema (Alembic's
compare test and `create_all` see them), but live here so the security code owns its own schema.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db_models import NEVER_REUSE_IDS, Base, UTCDateTime, utcnow


class ApiKey(Base):
    """One API key: a public `key_id` (part of the secret, for lookup) and the secret's SHA-256.

    The secret itself is never stored. A fast hash is enough because the secret is 256 random bits:
    nobody can brute-force it, so a slow password hash would only add latency to every request.
    """

    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(255), doc="Comma-separated scope names.")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)


class VerifyLockout(Base):
    """Failed-verify counter and lock of one user_id (a row per user that ever failed)."""

    __tablename__ = "verify_lockouts"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lock_count: Mapped[int] = mapped_column(Integer, default=0, doc="Locks so far: the period doubles.")


class AuditEntry(Base):
    """One audit event; `entry_hash` = SHA-256 over the previous entry's hash and this row's fields."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="1, 2, 3, ...")
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    key_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    summary: Mapped[str] = mapped_column(Text, doc="Canonical JSON: votes, thresholds, model, ...")
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client: Mapped[str | None] = mapped_column(String(128), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row (id 1) naming the chain's last entry and the anchor left by pruning.

    Every append updates it in the same transaction, which (a) serialises appends across replicas
    (the row lock) and (b) makes a removed tail detectable: the head names a seq/hash that is gone.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    anchor_seq: Mapped[int] = mapped_column(default=0, doc="Entries <= this were pruned.")
    anchor_hash: Mapped[str] = mapped_column(String(64), doc="entry_hash of entry anchor_seq.")
