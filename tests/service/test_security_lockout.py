"""Verify lockout over HTTP and in the database, on SQLite and PostgreSQL.

Five failed verifies of one user_id within the window lock that user (429 locked_out, Retry-After,
even for the right face); the lock period doubles on repeat; `manage` unlocks; concurrent failures
are each counted (the state is a locked database row, not process memory).
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from service_testdata import lfw_bytes
from sqlalchemy import update

from service.security import lockout
from service.storage.database import create_db_engine, make_session_factory
from service.storage.tables import VerifyLockout

pytestmark = pytest.mark.lfw

BUSH, BLAIR = lfw_bytes("George_W_Bush", 1), lfw_bytes("Tony_Blair", 1)


def verify(client, photo: bytes, user_id: str = "bush"):
    return client.post("/verify", data={"user_id": user_id}, files={"image": ("p.jpg", photo, "image/jpeg")})


def test_five_failures_lock_the_user_until_unlocked(client) -> None:
    assert (
        client.post(
            "/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", BUSH, "image/jpeg"))]
        ).status_code
        == 201
    )
    for _ in range(4):
        assert verify(client, BLAIR).json()["verified"] is False
    assert verify(client, BUSH).json()["verified"] is True  # a success clears the count
    for _ in range(5):
        answer = verify(client, BLAIR)
        assert answer.status_code == 200 and answer.json()["verified"] is False
    locked = verify(client, BUSH)  # even the right face: the lock is on the user_id
    assert (locked.status_code, locked.json()["reason"]) == (429, "locked_out"), locked.text
    assert 55 <= int(locked.headers["Retry-After"]) <= 60

    unlocked = client.post("/users/bush/unlock")
    assert unlocked.status_code == 200 and unlocked.json() == {"user_id": "bush", "was_locked": True}
    assert verify(client, BUSH).json()["verified"] is True
    assert client.post("/users/nobody/unlock").json()["reason"] == "unknown_user"


def test_failures_outside_the_window_do_not_add_up(client) -> None:
    enrolled = client.post(
        "/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", BUSH, "image/jpeg"))]
    )
    assert enrolled.status_code == 201, enrolled.text
    for _ in range(4):
        assert verify(client, BLAIR).json()["verified"] is False
    with client.app.state.session_factory() as session:  # the first four happened 4 minutes ago
        # They were counted (else this test would pass on a lockout that counts nothing) ...
        row = session.get(VerifyLockout, "bush")
        assert row is not None and row.failures == 4, row
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4)
        session.execute(update(VerifyLockout).values(window_start=old))
        session.commit()
    assert verify(client, BLAIR).json()["verified"] is False
    with client.app.state.session_factory() as session:  # ... and the fifth one opened a new window
        row = session.get(VerifyLockout, "bush")
        assert row is not None and row.failures == 1
    assert verify(client, BUSH).status_code == 200  # 1 failure in the window, not 5


def _policy() -> lockout.LockoutPolicy:
    return lockout.LockoutPolicy(max_failures=5, window_s=180, base_s=60, max_s=200)


def test_lock_period_doubles_on_repeat_and_is_capped(backend) -> None:
    from service.runtime.config import normalise_database_url
    from service.storage.database import upgrade_to_head

    engine = create_db_engine(normalise_database_url(backend.url))
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    try:
        periods = []
        for _ in range(3):
            with factory() as session:
                results = [lockout.record_failure(session, _policy(), "eve") for _ in range(5)]
                periods.append(results[-1])
                assert results[:4] == [None] * 4
                assert lockout.retry_after_s(session, "eve") is not None
                session.execute(update(VerifyLockout).values(locked_until=None))  # let the lock expire
                session.commit()
        assert periods == [60, 120, 200]
        with factory() as session:
            lockout.record_success(session, "eve")
            assert [lockout.record_failure(session, _policy(), "eve") for _ in range(5)][-1] == 60
    finally:
        engine.dispose()


def test_concurrent_failures_are_each_counted(backend) -> None:
    from service.runtime.config import normalise_database_url
    from service.storage.database import upgrade_to_head

    engine = create_db_engine(normalise_database_url(backend.url))
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    policy = lockout.LockoutPolicy(max_failures=1000, window_s=600, base_s=60, max_s=60)
    barrier, errors = threading.Barrier(8), []

    def fail() -> None:
        try:
            barrier.wait()
            with factory() as session:
                for _ in range(5):
                    lockout.record_failure(session, policy, "race")
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with factory() as session:
            row = session.get(VerifyLockout, "race")
            assert row is not None and row.failures == 40
    finally:
        engine.dispose()
