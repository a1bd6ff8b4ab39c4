"""Database tables of the liveness challenge (migration 0004_liveness mirrors them).

A challenge row is the server's memory of what it asked: which user, which API key, which steps,
until when. It lives in the database, not in a replica's memory, so a challenge issued by one replica
can be answered on another; consuming it is one conditional UPDATE (see service.liveness_store), so
two replicas cannot both accept it. Burst hashes remember accepted frames so a recorded burst cannot
be sent again.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db_models import NEVER_REUSE_IDS, Base, UTCDateTime, utcnow


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


__all__ = ["LivenessBurstHash", "LivenessChallenge"]
