"""Verify lockout: after N failed verifies of one user_id within a window, refuse that user's verifies.

State is a database row per user_id, so every replica sees the same counter and lock. Recording a
failure starts with a write (insert-if-absent, then a locked read on PostgreSQL; on SQLite the
insert takes the database write lock), so concurrent failures are counted exactly once each.
The lock period doubles with every repeat lock (capped) and resets after a successful verify.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.errors import TooManyRequests
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


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def retry_after_s(session: Session, user_id: str, now: dt.datetime | None = None) -> int | None:
    """Seconds until `user_id` may verify again, or None when it is not locked."""
    now = now or utcnow()
    until = _aware(session.scalar(select(VerifyLockout.locked_until).where(VerifyLockout.user_id == user_id)))
    if until is None or until <= now:
        return None
    return max(1, math.ceil((until - now).total_seconds()))


def ensure_not_locked(session: Session, user_id: str) -> None:
    wait = retry_after_s(session, user_id)
    if wait is not None:
        raise TooManyRequests(
            "locked_out",
            f"too many failed verifies of user {user_id!r}; try again in {wait} s (or ask for an unlock)",
            retry_after_s=wait,
        )


def record_failure(session: Session, policy: LockoutPolicy, user_id: str) -> int | None:
    """Count one failed verify (own transaction, committed); returns the lock period if it locked now."""
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
    session.commit()
    return period


def record_success(session: Session, user_id: str) -> None:
    """A successful verify clears the failure count and the repeat-lock history."""
    session.commit()
    session.execute(
        update(VerifyLockout)
        .where(VerifyLockout.user_id == user_id)
        .values(failures=0, window_start=None, lock_count=0)
    )
    session.commit()


def unlock(session: Session, user_id: str) -> bool:
    """Lift a lock and forget the failures; True if the user was locked."""
    was_locked = retry_after_s(session, user_id) is not None
    session.execute(delete(VerifyLockout).where(VerifyLockout.user_id == user_id))
    session.commit()
    return was_locked
