"""Database schema (SQLAlchemy 2 typed models); Alembic migrations in `service/storage/migrations/` mirror it.

One module for every table (users and images, API keys and the audit chain, lockouts, liveness
challenges and burst hashes), so one metadata describes the whole schema and no table module imports
another.

A user owns images; an image row indexes one stored file by content hash and carries the embedding
computed at enrolment together with the model version that produced it, so that a verify only reads
vectors (no CNN per enrolled image) and a model change is detectable (`faceverify reembed`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from service.storage.crypto import DecryptionError, KeyRing, embedding_aad
from service.storage.photos import user_dir_name

# Deterministic constraint names so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Every table with a surrogate integer key takes this: an id, once handed out, names that row for
# ever. SQLite's plain INTEGER PRIMARY KEY gives max(rowid) + 1, so deleting the newest row freed
# its id (a retried DELETE of image 7 then removed the next photo enrolled); AUTOINCREMENT never
# hands an id out twice, like PostgreSQL's sequences (this option changes nothing there). Migration
# 0005 rebuilt the existing SQLite tables with it.
NEVER_REUSE_IDS: dict[str, bool] = {"sqlite_autoincrement": True}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (timestamptz); SQLite has no datetime type and hands back naive
    values, which broke the API's declared date-time format (issue 8). Values are stored as UTC and
    a naive value read back is UTC by construction, so it gets the UTC zone attached. Use this for
    every datetime column.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use an aware one")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), unique=True)
    store_dir: Mapped[str | None] = mapped_column(
        String(32),
        index=True,
        default=lambda context: user_dir_name(context.get_current_parameters()["user_id"]),
        doc="The user's photo directory (service.storage.photos.user_dir_name); the crash repair finds a "
        "directory's rows by it.",
    )
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    images: Mapped[list[Image]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, order_by="Image.id"
    )


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("user_pk", "sha256", name="uq_images_user_sha256"),
        Index("ix_images_user_pk_model_version", "user_pk", "model_version"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(
        String(255), doc="Relative to DATA_DIR/images; the file is the sealed photo (if photo_stored)."
    )
    size: Mapped[int] = mapped_column(Integer)
    box_x: Mapped[int] = mapped_column(Integer)
    box_y: Mapped[int] = mapped_column(Integer)
    box_w: Mapped[int] = mapped_column(Integer)
    box_h: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(
        LargeBinary, doc="Sealed (service.storage.crypto) float32 little-endian, embedding_dim values."
    )
    embedding_dim: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(64))
    photo_stored: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), doc="False in embeddings-only mode: no file."
    )
    key_id: Mapped[str | None] = mapped_column(
        String(16), default=None, doc="Key that sealed the embedding and photo; NULL = legacy plaintext."
    )
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship(back_populates="images")

    @property
    def box(self) -> list[int]:
        return [self.box_x, self.box_y, self.box_w, self.box_h]

    def vector(self, keyring: KeyRing) -> np.ndarray:
        return open_embedding(keyring, self.embedding, self.embedding_dim, self.user_pk, self.sha256)


def seal_embedding(keyring: KeyRing, vector: np.ndarray, user_pk: int, sha256: str) -> bytes:
    return keyring.seal(embedding_to_bytes(vector), embedding_aad(user_pk, sha256))


def open_embedding(keyring: KeyRing, blob: bytes, dim: int, user_pk: int, sha256: str) -> np.ndarray:
    """The stored vector: decrypted and authenticated against its row (user, sha256)."""
    return embedding_from_bytes(keyring.open(blob, embedding_aad(user_pk, sha256)), dim)


# What opening a stored embedding raises when the row cannot be used (never a bug of the caller).
UNREADABLE_ERRORS: tuple[type[Exception], ...] = (DecryptionError, ValueError)


def unreadable_reason(exc: Exception) -> str:
    """Stable code for a stored blob that cannot be read, for logs, metrics and `store check`:
    the DecryptionError's `authentication_failed` (tampered, copied from another row) or
    `unknown_key` (sealed with a key this process lacks), else `malformed` (not `embedding_dim`
    float32 values, e.g. a truncated legacy plaintext blob)."""
    return exc.reason if isinstance(exc, DecryptionError) else "malformed"


def embedding_to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def embedding_from_bytes(blob: bytes, dim: int) -> np.ndarray:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape != (dim,):
        raise ValueError(f"stored embedding has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)




# ----------------------------------------------------------------- security (migration 0002_security)

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


# ----------------------------------------------- liveness challenges (migration 0004_liveness)

class LivenessChallenge(Base):
    __tablename__ = "liveness_challenges"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    challenge_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    steps: Mapped[str] = mapped_column(String(128), doc="Comma-separated step names, in order.")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LivenessBurstHash(Base):
    __tablename__ = "liveness_burst_hashes"
    __table_args__ = (Index("ix_liveness_burst_hashes_user_pk", "user_pk"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    chip_hash: Mapped[int] = mapped_column(BigInteger, doc="64-bit DCT hash of the face chip, signed.")
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

