"""Liveness challenges and burst hashes in the database: issue, consume once, remember bursts.

Why the database: any replica may receive the answer to a challenge another replica issued, so the
challenge cannot live in memory. Why one conditional UPDATE to consume: two replicas receiving the
same challenge at once both run `UPDATE ... SET used_at = now WHERE challenge_id = ? AND used_at IS
NULL AND expires_at > now`; the database applies them one after the other and only the first
changes a row (rowcount 1), on SQLite and PostgreSQL alike. Only when nothing changed is the row read
again, to say why (unknown, foreign, used, expired).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from faceverify.liveness.freshness import from_signed64, to_signed64
from faceverify.liveness.steps import POSE_STEPS
from service.errors import Conflict, Forbidden, NotFound
from service.storage.tables import LivenessBurstHash, LivenessChallenge, User, utcnow


@dataclass(frozen=True)
class IssuedChallenge:
    challenge_id: str
    steps: list[str]
    expires_in_s: int


def random_steps(include_move_closer: bool = False) -> list[str]:
    """2 or 3 distinct steps in random order, from the OS's CSPRNG (an attacker cannot predict them)."""
    pool = list(POSE_STEPS) + (["move_closer"] if include_move_closer else [])
    count = 2 + secrets.randbelow(2)
    return secrets.SystemRandom().sample(pool, count)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (stored as UTC): make them comparable."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def issue_challenge(
    session: Session,
    user: User,
    ttl_s: int,
    api_key_name: str | None = None,
    include_move_closer: bool = False,
    now: dt.datetime | None = None,
) -> IssuedChallenge:
    """Store a new challenge for `user` (and the calling key) and commit it."""
    now = now or utcnow()
    steps = random_steps(include_move_closer)
    challenge_id = secrets.token_urlsafe(24)
    session.add(
        LivenessChallenge(
            challenge_id=challenge_id,
            user_pk=user.id,
            api_key_name=api_key_name,
            steps=",".join(steps),
            created=now,
            expires_at=now + dt.timedelta(seconds=ttl_s),
        )
    )
    session.commit()
    return IssuedChallenge(challenge_id, steps, ttl_s)


def consume_challenge(
    session: Session,
    challenge_id: str,
    user: User,
    api_key_name: str | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Mark the challenge used and return its steps, or raise the DomainError that says why not.

    A challenge of another user or key is refused WITHOUT consuming it (a stranger cannot burn the
    user's challenge); an unknown, used or expired one is refused as such."""
    now = now or utcnow()
    row = session.scalar(select(LivenessChallenge).where(LivenessChallenge.challenge_id == challenge_id))
    if row is None:
        session.rollback()
        raise NotFound("unknown_challenge", "no such liveness challenge")
    if row.user_pk != user.id:
        session.rollback()
        raise Forbidden("challenge_user_mismatch", "the challenge was issued for another user")
    if row.api_key_name is not None and row.api_key_name != api_key_name:
        session.rollback()
        raise Forbidden("challenge_key_mismatch", "the challenge was issued to another API key")
    result = cast(
        CursorResult[Any],
        session.execute(
            update(LivenessChallenge)
            .where(
                LivenessChallenge.id == row.id,
                LivenessChallenge.used_at.is_(None),
                LivenessChallenge.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    session.commit()
    if result.rowcount == 1:
        return row.steps.split(",")
    session.refresh(row)
    session.rollback()
    if row.used_at is not None:
        raise Conflict("challenge_used", "the liveness challenge was already used; ask for a new one")
    if _aware(row.expires_at) <= now:
        raise Conflict("challenge_expired", "the liveness challenge expired; ask for a new one")
    raise Conflict("challenge_used", "the liveness challenge could not be consumed")  # pragma: no cover


def earlier_burst_hashes(session: Session, user: User, limit: int = 4000) -> tuple[set[str], list[int]]:
    """sha256 digests and chip hashes of the frames of the user's latest judged bursts (newest first)."""
    rows = session.execute(
        select(LivenessBurstHash.sha256, LivenessBurstHash.chip_hash)
        .where(LivenessBurstHash.user_pk == user.id)
        .order_by(LivenessBurstHash.id.desc())
        .limit(limit)
    ).all()
    return {digest for digest, _ in rows}, [from_signed64(int(value)) for _, value in rows]


def remember_burst(session: Session, user: User, sha256: Sequence[str], chip_hashes: Sequence[int]) -> None:
    """Store a judged burst's frame hashes (passed or not) so the same frames cannot be sent again."""
    now = utcnow()
    session.add_all(
        LivenessBurstHash(user_pk=user.id, sha256=d, chip_hash=to_signed64(h), created=now)
        for d, h in zip(sha256, chip_hashes, strict=True)
    )
    session.commit()
