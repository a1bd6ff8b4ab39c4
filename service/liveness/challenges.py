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

Clocks (issue 18): a challenge is usable only while `now < expires_at <= now + ttl`, so it never
lives longer than its TTL whatever the issuing replica's clock said (a consumer whose clock is a
day slow would otherwise accept it for a day).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from faceverify.liveness.freshness import from_signed64, to_signed64
from faceverify.liveness.steps import draw_challenge
from service.errors import Conflict, Forbidden, NotFound, TooManyRequests
from service.runtime.config import Settings
from service.security import lockout
from service.storage.tables import LivenessBurstHash, LivenessChallenge, User, utcnow

# How a client records the answer: facing the camera first, then a fixed time per step, at a fixed
# rate. The checks' thresholds were set and measured on bursts recorded this way (the webcam
# client's defaults; README "Liveness"), so the challenge tells every client (the browser kiosk
# too) instead of each one guessing.
BURST_FRAME_RATE = 6.0
BURST_NEUTRAL_S = 1.0
BURST_STEP_S = 2.0


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


def close_open_challenges(session: Session, user: User, now: dt.datetime, window_s: int) -> int:
    """Close every unanswered challenge of the user (open or expired); how many of them were issued
    within the lockout window (`window_s`): those count as failed attempts, older ones would have
    left the window anyway (as an old failed verify does). Each UPDATE closes a row once: two
    concurrent requests cannot both close (and count) the same challenge."""
    since = now - dt.timedelta(seconds=window_s)
    counted = 0
    for recent in (True, False):
        age = LivenessChallenge.created > since if recent else LivenessChallenge.created <= since
        result = cast(
            CursorResult[Any],
            session.execute(
                update(LivenessChallenge)
                .where(LivenessChallenge.user_pk == user.id, LivenessChallenge.used_at.is_(None), age)
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            ),
        )
        if recent:
            counted = int(result.rowcount or 0)
    session.commit()
    return counted


@dataclass(frozen=True)
class OpenedChallenge:
    issued: IssuedChallenge
    abandoned: int  # earlier unanswered challenges of the lockout window closed (each a failure)
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
    lockout.ensure_not_locked(session, user.user_id, settings.lockout_max_s)
    check_challenge_rate(session, user, settings, now)
    abandoned = close_open_challenges(session, user, now, settings.lockout_window_s)
    locked_for = None
    for _ in range(abandoned):
        locked_for = lockout.record_failure(session, lockout.policy_of(settings), user.user_id) or locked_for
    if locked_for is not None:
        lockout.ensure_not_locked(session, user.user_id, settings.lockout_max_s)  # our draws locked it
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
    ttl_s: int | None = None,
) -> list[str]:
    """Mark the challenge used and return its steps, or raise the DomainError that says why not.
    With `ttl_s`, a challenge expiring more than `ttl_s` from now is refused as expired (clock skew).

    A challenge of another user or key is refused WITHOUT consuming it (a stranger cannot burn the
    user's challenge); an unknown, used or expired one is refused as such."""
    now = now or utcnow()
    latest = now + dt.timedelta(seconds=ttl_s) if ttl_s is not None else None
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
                *([LivenessChallenge.expires_at <= latest] if latest is not None else []),
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
    if latest is not None and _aware(row.expires_at) > latest:
        raise Conflict(
            "challenge_expired",
            "the liveness challenge claims a lifetime longer than the configured TTL (the clocks of "
            "the replicas disagree); ask for a new one",
        )
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


def remember_burst(
    session: Session, user: User, sha256: Sequence[str], chip_hashes: Sequence[int], commit: bool = True
) -> None:
    """Store a judged burst's frame hashes (passed or not) so the same frames cannot be sent again
    (`commit=False`: inside the caller's transaction, which commits them with its own writes)."""
    now = utcnow()
    session.add_all(
        LivenessBurstHash(user_pk=user.id, sha256=d, chip_hash=to_signed64(h), created=now)
        for d, h in zip(sha256, chip_hashes, strict=True)
    )
    if commit:
        session.commit()


@dataclass(frozen=True)
class SweepResult:
    challenges: int
    burst_hashes: int


def sweep(
    session: Session, challenge_retention_s: int, burst_retention_s: int, now: dt.datetime | None = None
) -> SweepResult:
    """Delete challenges expired more than `challenge_retention_s` ago (used or not: a late answer
    then gets 404 instead of 409 `challenge_expired`) and burst hashes older than
    `burst_retention_s` (a burst that old may be sent again). Committed; counts what went."""
    now = now or utcnow()
    challenges = _delete_before(session, LivenessChallenge.expires_at, now, challenge_retention_s)
    hashes = _delete_before(session, LivenessBurstHash.created, now, burst_retention_s)
    session.commit()
    return SweepResult(challenges, hashes)


def _delete_before(session: Session, column: Any, now: dt.datetime, age_s: int) -> int:
    """Delete the rows of `column`'s table whose `column` is more than `age_s` before `now`."""
    statement = delete(column.class_).where(column < now - dt.timedelta(seconds=age_s))
    result = cast(CursorResult[Any], session.execute(statement.execution_options(synchronize_session=False)))
    return int(result.rowcount or 0)


class Sweeper:
    """Runs `sweep` at most once per `interval_s` per process, from the challenge route (issue 18:
    expired challenges, ~1.9 KB each, and burst hashes were never deleted, so a flood of challenge
    requests grew the tables without bound). Tied to issuing, the work scales with the flood."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        """True for one caller once the interval has passed (the others go on without sweeping)."""
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                return False
            self._next = now + self.interval_s
            return True
