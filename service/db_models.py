"""Database schema (SQLAlchemy 2 typed models); Alembic migrations in `migrations/` mirror it.

A user owns images; an image row indexes one stored file by content hash and carries the embedding
computed at enrolment together with the model version that produced it, so that a verify only reads
vectors (no CNN per enrolled image) and a model change is detectable (`faceverify reembed`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from service.crypto import DecryptionError, KeyRing, embedding_aad
from service.store import user_dir_name

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
        doc="The user's photo directory (service.store.user_dir_name); the crash repair finds a "
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
        LargeBinary, doc="Sealed (service.crypto) float32 little-endian, embedding_dim values."
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


__all__ = [
    "NEVER_REUSE_IDS",
    "UNREADABLE_ERRORS",
    "Base",
    "Image",
    "UTCDateTime",
    "User",
    "embedding_from_bytes",
    "embedding_to_bytes",
    "open_embedding",
    "seal_embedding",
    "unreadable_reason",
]

# The liveness tables live in their own module (owned by the liveness feature) but must be on
# Base.metadata wherever the schema is compared or created.
from service import liveness_models as _liveness_models  # noqa: E402,F401
