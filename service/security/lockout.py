"""Verify lockout: after N failed verifies of one user_id within a window, refuse that user's verifies.

State is a database row per user_id, so every replica sees the same counter and lock. Recording a
failure starts with a write (insert-if-absent, then a locked read on PostgreSQL; on SQLite the
insert takes the database write lock), so concurrent failures are counted exactly once each.
The lock period doubles with every repeat lock (capped) and resets after a successful verify.

Whatever the stored timestamps say (a replica whose clock ran a day fast wrote them), a lock never
lasts longer than `max_s` from now: a lock ending later is cut back to now + max_s when it is read,
so Retry-After never exceeds the configured maximum (issue 18).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.errors import TooManyRequests
from service.runtime.config import Settings
from service.security import audit
from service.storage.tables import VerifyLockout, utcnow


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window_s: int = 180
    base_s: int = 60
    max_s: int = 3600

    def lock_period_s(self, lock_count: int) -> int:
        """base, 2*base, 4*base, ... capped at max_s (lock_count counts from 1)."""
        return int(min(self.max_s, self.base_s * 2 ** min(max(lock_count - 1, 0), 30)))


def policy_of(settings: Settings) -> LockoutPolicy:
    """The lockout policy the settings describe (verify failures and abandoned liveness challenges)."""
    return LockoutPolicy(
        settings.lockout_max_failures,
        settings.lockout_window_s,
        settings.lockout_base_s,
        settings.lockout_max_s,
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def retry_after_s(
    session: Session, user_id: str, now: dt.datetime | None = None, max_s: int | None = None
) -> int | None:
    """Seconds until `user_id` may verify again (at most `max_s`), or None when it is not locked."""
    now = now or utcnow()
    until = _aware(session.scalar(select(VerifyLockout.locked_until).where(VerifyLockout.user_id == user_id)))
    if until is None or until <= now:
        return None
    wait = max(1, math.ceil((until - now).total_seconds()))
    return wait if max_s is None else min(wait, max_s)


def clamp_lock(session: Session, user_id: str, max_s: int, now: dt.datetime | None = None) -> None:
    """Cut a stored lock that ends more than `max_s` from now back to now + max_s (committed)."""
    now = now or utcnow()
    limit = now + dt.timedelta(seconds=max_s)
    session.execute(
        update(VerifyLockout)
        .where(VerifyLockout.user_id == user_id, VerifyLockout.locked_until > limit)
        .values(locked_until=limit)
    )
    session.commit()


def ensure_not_locked(session: Session, user_id: str, max_s: int | None = None) -> None:
    """429 `locked_out` while the user is locked; with `max_s`, a lock stored beyond now + max_s
    (a fast clock wrote it) is cut back first."""
    wait = retry_after_s(session, user_id)
    if wait is not None and max_s is not None and wait > max_s:
        clamp_lock(session, user_id, max_s)
        wait = retry_after_s(session, user_id, max_s=max_s)
    if wait is not None:
        raise TooManyRequests(
            "locked_out",
            f"too many failed verifies of user {user_id!r}; try again in {wait} s (or ask for an unlock)",
            retry_after_s=wait,
        )


def record_failure(
    session: Session,
    policy: LockoutPolicy,
    user_id: str,
    before_commit: Callable[[int | None], None] | None = None,
) -> int | None:
    """Count one failed verify (own transaction, committed); returns the lock period if it locked now.
    `before_commit(period)` runs inside that transaction (the request's audit entry goes there)."""
    session.commit()  # start from a clean transaction whose first statement is a write
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(VerifyLockout)
        .values(user_id=user_id, failures=0, lock_count=0)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    row = session.scalars(
        select(VerifyLockout).where(VerifyLockout.user_id == user_id).with_for_update()
    ).one()
    session.refresh(row)
    now = utcnow()
    locked_until, window_start = _aware(row.locked_until), _aware(row.window_start)
    if locked_until is not None and locked_until > now + dt.timedelta(seconds=policy.max_s):
        locked_until = row.locked_until = now + dt.timedelta(seconds=policy.max_s)  # a fast clock's
    if window_start is not None and window_start > now:
        window_start = None  # a window "starting" in the future: start it now
    period: int | None = None
    if locked_until is not None and locked_until > now:
        pass  # a request that started before the lock: the user is already locked
    else:
        if window_start is None or (now - window_start).total_seconds() > policy.window_s:
            row.failures, row.window_start = 0, now
        row.failures += 1
        if row.failures >= policy.max_failures:
            row.lock_count += 1
            period = policy.lock_period_s(row.lock_count)
            row.locked_until = now + dt.timedelta(seconds=period)
            row.failures, row.window_start = 0, None
    if before_commit is not None:
        session.flush()
        before_commit(period)
    session.commit()
    return period


def record_success(
    session: Session, user_id: str, before_commit: Callable[[], None] | None = None
) -> None:
    """A successful verify clears the failure count and the repeat-lock history (`before_commit`
    runs inside that transaction)."""
    session.commit()
    session.execute(
        update(VerifyLockout)
        .where(VerifyLockout.user_id == user_id)
        .values(failures=0, window_start=None, lock_count=0)
    )
    if before_commit is not None:
        before_commit()
    session.commit()


def unlock(session: Session, user_id: str) -> bool:
    """Lift a lock and forget the failures; True if the user was locked."""
    was_locked = retry_after_s(session, user_id) is not None
    session.execute(delete(VerifyLockout).where(VerifyLockout.user_id == user_id))
    audit.record_in(session, "ok", None, {"was_locked": was_locked})  # no audit, no unlock
    session.commit()
    return was_locked
