"""Issue 18 items 12 and 9 on SQLite and PostgreSQL: times clamped to their configured maxima
whatever the stored timestamps say, and liveness tables that stay bounded.

Before: a lock written while a clock ran a day fast gave Retry-After 86,460 s (maximum 3,600); a
challenge whose stored expiry lay a day ahead (issuer's clock fast, or this replica's slow) was
accepted for a day; expired challenges and old burst hashes were never deleted.
"""

from __future__ import annotations

import datetime as dt

import pytest
from service_testdata import lfw_bytes
from sqlalchemy import func, insert, select, update

from service.storage.tables import LivenessBurstHash, LivenessChallenge, User, VerifyLockout

pytestmark = pytest.mark.lfw

BUSH = ("George_W_Bush", 1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _enroll(client, user_id: str = "bush") -> None:
    files = [("images", ("a.jpg", lfw_bytes(*BUSH), "image/jpeg"))]
    assert client.post("/enroll", data={"user_id": user_id}, files=files).status_code == 201


def _verify(client, user_id: str = "bush"):
    return client.post(
        "/verify", data={"user_id": user_id}, files={"image": ("p.jpg", lfw_bytes(*BUSH), "image/jpeg")}
    )


def _blank_frames(n: int = 8) -> list[bytes]:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))
    assert ok
    return [data.tobytes()] * n


def test_a_lock_stored_a_day_ahead_is_cut_to_the_maximum(client) -> None:
    _enroll(client)
    maximum = client.app.state.settings.lockout_max_s
    with client.app.state.session_factory() as session:  # written by a replica whose clock ran a day fast
        session.execute(
            insert(VerifyLockout).values(
                user_id="bush", failures=0, lock_count=1, locked_until=_now() + dt.timedelta(days=1)
            )
        )
        session.commit()
    refused = _verify(client)
    assert (refused.status_code, refused.json()["reason"]) == (429, "locked_out"), refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= maximum
    with client.app.state.session_factory() as session:
        until = session.scalar(select(VerifyLockout.locked_until).where(VerifyLockout.user_id == "bush"))
    assert until is not None
    until = until if until.tzinfo else until.replace(tzinfo=dt.UTC)
    assert until <= _now() + dt.timedelta(seconds=maximum)  # the stored lock itself ends in time


def test_a_challenge_claiming_to_live_a_day_is_refused(client) -> None:
    _enroll(client)
    challenge_id = client.post("/liveness/challenge", data={"user_id": "bush"}).json()["challenge_id"]
    with client.app.state.session_factory() as session:
        session.execute(
            update(LivenessChallenge)
            .where(LivenessChallenge.challenge_id == challenge_id)
            .values(expires_at=_now() + dt.timedelta(days=1))
        )
        session.commit()
    files = [("frames", (f"f{i}.jpg", data, "image/jpeg")) for i, data in enumerate(_blank_frames())]
    answer = client.post("/verify", data={"user_id": "bush", "challenge_id": challenge_id}, files=files)
    assert (answer.status_code, answer.json()["reason"]) == (409, "challenge_expired"), answer.text


def test_expired_challenges_and_old_burst_hashes_are_swept_on_issue(client) -> None:
    _enroll(client)
    settings = client.app.state.settings
    now = _now()
    with client.app.state.session_factory() as session:
        user_pk = session.scalar(select(User.id).where(User.user_id == "bush"))
        expired = now - dt.timedelta(days=1)  # past the default retentions (1 h, 30 days)
        old = now - dt.timedelta(days=60)
        session.execute(
            insert(LivenessChallenge),
            [
                {"challenge_id": f"flood-{i}", "user_pk": user_pk, "steps": "turn_left,look_up",
                 "created": expired - dt.timedelta(seconds=30), "expires_at": expired}
                for i in range(300)
            ],
        )  # fmt: skip
        session.execute(
            insert(LivenessBurstHash),
            [{"user_pk": user_pk, "sha256": f"{i:064x}", "chip_hash": i, "created": old} for i in range(300)]
            + [{"user_pk": user_pk, "sha256": "f" * 64, "chip_hash": 7, "created": now}],
        )
        session.commit()
    issued = client.post("/liveness/challenge", data={"user_id": "bush"})
    assert issued.status_code == 201, issued.text
    with client.app.state.session_factory() as session:
        challenges = session.scalar(select(func.count()).select_from(LivenessChallenge))
        hashes = session.scalar(select(func.count()).select_from(LivenessBurstHash))
    assert challenges == 1  # only the live one
    assert hashes == 1  # the recent burst hash is kept: it still refuses a replay
    assert (
        settings.liveness_challenge_retention_s < 86400 and settings.liveness_burst_retention_s < 60 * 86400
    )
