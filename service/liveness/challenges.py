"""Liveness challenges and burst hashes in the database: issue, consume once, remember bursts.

Why the database: any replica may receive the answer to a challenge another replica issued, so the
challenge cannot live in memory. Why one conditional UPDATE to consume: two replicas receiving the
same challenge at once both run `UPDATE ... SET used_at = now WHERE challenge_id = ? AND used_at IS
NULL AND expires_at > now`; the database applies them one after the other and only the first
changes a row (rowcount 1), on SQLite and PostgreSQL alike. Only when nothing changed is the row read
again, to say why (unknown, foreign, used, expired).

Why the attacker cannot pick the challenge (issue 20): at most one challenge per user is open -- a
new request closes the previous one, and every closed-unanswered challenge (replaced, or found
expired when answered) counts one failed attempt towards the verify lockout, so drawing challenges
until a convenient one comes up locks the user out; challenge requests are also limited per user
(`liveness_challenges_per_window` in `liveness_challenge_window_s`, counted in this table, so the
limit holds across replicas); and every challenge has an action and a vertical step
(`faceverify.liveness.steps.draw_challenge`), so there is no weak draw to wait for.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from faceverify.liveness.freshness import from_signed64, to_signed64
from faceverify.liveness.steps import draw_challenge
from service.errors import Conflict, Forbidden, NotFound, TooManyRequests
from service.runtime.config import Settings
from service.security import lockout
from service.storage.tables import LivenessBurstHash, LivenessChallenge, User, utcnow


@dataclass(frozen=True)
class IssuedChallenge:
    challenge_id: str
    steps: list[str]
    expires_in_s: int


def random_steps(include_move_closer: bool = False) -> list[str]:
    """An action, a vertical step and on half of the draws a turn (draw_challenge), in random order,
    from the OS's CSPRNG (an attacker cannot predict them); `move_closer`, when enabled, is added on
    half of the draws."""
    rand = secrets.SystemRandom()
    steps = draw_challenge(rand)
    if include_move_closer and rand.random() < 0.5:
        steps.insert(rand.randrange(len(steps) + 1), "move_closer")
    return steps


class ChallengeExpired(Conflict):
    """409 `challenge_expired`; `newly_closed` when this answer closed it (it counts as a failure)."""

    def __init__(self, newly_closed: bool) -> None:
        super().__init__("challenge_expired", "the liveness challenge expired; ask for a new one")
        self.newly_closed = newly_closed


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
    """Store a new challenge for `user` (and the calling key) and commit it (no policy: see
    open_challenge, which the route uses)."""
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


def check_challenge_rate(session: Session, user: User, settings: Settings, now: dt.datetime) -> None:
    """429 `challenge_rate_limited` when the user already asked for `liveness_challenges_per_window`
    challenges in the last `liveness_challenge_window_s` seconds (rows of this table: every replica
    sees them)."""
    limit, window = settings.liveness_challenges_per_window, settings.liveness_challenge_window_s
    if limit <= 0:
        return
    since = now - dt.timedelta(seconds=window)
    count, oldest = session.execute(
        select(func.count(LivenessChallenge.id), func.min(LivenessChallenge.created)).where(
            LivenessChallenge.user_pk == user.id, LivenessChallenge.created > since
        )
    ).one()
    if count >= limit:
        first = _aware(oldest) if oldest is not None else now
        wait = max(1, int((first + dt.timedelta(seconds=window) - now).total_seconds()) + 1)
        session.rollback()
        raise TooManyRequests(
            "challenge_rate_limited",
            f"at most {limit} liveness challenges per {window} s for one user; try again in {wait} s",
            retry_after_s=wait,
        )


def close_open_challenges(session: Session, user: User, now: dt.datetime) -> int:
    """Close every unanswered challenge of the user (open or expired); how many were closed. One
    UPDATE: two concurrent requests cannot both close (and count) the same row."""
    result = cast(
        CursorResult[Any],
        session.execute(
            update(LivenessChallenge)
            .where(LivenessChallenge.user_pk == user.id, LivenessChallenge.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    session.commit()
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class OpenedChallenge:
    issued: IssuedChallenge
    abandoned: int  # earlier unanswered challenges closed by this request (each counted a failure)
    locked_for_s: int | None  # set when counting them locked the user


def open_challenge(
    session: Session,
    settings: Settings,
    user: User,
    api_key_name: str | None = None,
    now: dt.datetime | None = None,
) -> OpenedChallenge:
    """The one open challenge of `user`: refused while the user is locked out or over the request
    rate; replaces (closes) any earlier unanswered challenge, each counting as a failed verify."""
    now = now or utcnow()
    lockout.ensure_not_locked(session, user.user_id)
    check_challenge_rate(session, user, settings, now)
    abandoned = close_open_challenges(session, user, now)
    locked_for = None
    for _ in range(abandoned):
        locked_for = lockout.record_failure(session, lockout.policy_of(settings), user.user_id) or locked_for
    if locked_for is not None:
        lockout.ensure_not_locked(session, user.user_id)  # this request's own draws locked the user
    issued = issue_challenge(
        session, user, settings.liveness_challenge_ttl_s, api_key_name, settings.liveness_move_closer, now
    )
    return OpenedChallenge(issued, abandoned, locked_for)


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
        closed = cast(
            CursorResult[Any],
            session.execute(
                update(LivenessChallenge)
                .where(LivenessChallenge.id == row.id, LivenessChallenge.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            ),
        )
        session.commit()
        raise ChallengeExpired(newly_closed=closed.rowcount == 1)
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
