"""Liveness endpoints over HTTP on SQLite and PostgreSQL (`client` fixture): challenge issue, single
use, expiry, binding to the user, and the burst /verify refusing a tilted photo acting out the steps.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from service_testdata import lfw_bytes
from sqlalchemy import select, update

from service.storage.tables import LivenessChallenge

pytestmark = pytest.mark.lfw

BUSH = ("George_W_Bush", 1)
POWELL = ("Colin_Powell", 6)
STEP_NAMES = {"turn_left", "turn_right", "look_up", "look_down", "blink", "open_mouth"}
ACTIONS = {"blink", "open_mouth"}
VERTICAL = {"look_up", "look_down"}


def _enroll(client, user_id: str, photo: tuple[str, int]) -> None:
    files = [("images", ("a.jpg", lfw_bytes(*photo), "image/jpeg"))]
    assert client.post("/enroll", data={"user_id": user_id}, files=files).status_code == 201


def _challenge(client, user_id: str):
    return client.post("/liveness/challenge", data={"user_id": user_id})


def _burst(client, user_id: str, challenge_id: str, frames: list[bytes], **form: str):
    files = [("frames", (f"f{i:02d}.jpg", data, "image/jpeg")) for i, data in enumerate(frames)]
    return client.post(
        "/verify", data={"user_id": user_id, "challenge_id": challenge_id, **form}, files=files
    )


def _assert_error(response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason, response.json()


def _blank_frames(n: int = 8) -> list[bytes]:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))
    assert ok
    return [data.tobytes()] * n


def _failures(client, user_id: str) -> int:
    from service.storage.tables import VerifyLockout

    with client.app.state.session_factory() as session:
        row = session.scalar(select(VerifyLockout).where(VerifyLockout.user_id == user_id))
        return 0 if row is None else int(row.failures)


def test_every_challenge_has_an_action_and_a_vertical_step(client) -> None:
    _enroll(client, "bush", BUSH)
    response = _challenge(client, "bush")
    assert response.status_code == 201, response.text
    body = response.json()
    steps = body["steps"]
    assert 2 <= len(steps) <= 3 and set(steps) <= STEP_NAMES and len(set(steps)) == len(steps)
    assert len(set(steps) & ACTIONS) == 1 and len(set(steps) & VERTICAL) == 1, steps
    assert body["expires_in_s"] == 30 and len(body["challenge_id"]) >= 24
    with client.app.state.session_factory() as session:
        rows = list(session.scalars(select(LivenessChallenge)))
    assert len(rows) == 1 and rows[0].used_at is None and rows[0].api_key_name == "bootstrap-admin"
    assert rows[0].steps == ",".join(steps)


def test_a_new_challenge_replaces_the_open_one_and_each_abandoned_one_is_a_failure(client) -> None:
    """Drawing challenges until a convenient one comes up costs failed attempts: the fifth
    replacement locks the user (lockout_max_failures = 5), and a locked user gets no challenge."""
    _enroll(client, "bush", BUSH)
    first = _challenge(client, "bush").json()["challenge_id"]
    second = _challenge(client, "bush").json()["challenge_id"]
    assert _failures(client, "bush") == 1
    _assert_error(_burst(client, "bush", first, _blank_frames()), 409, "challenge_used")  # closed
    with client.app.state.session_factory() as session:
        open_rows = session.scalars(
            select(LivenessChallenge).where(LivenessChallenge.used_at.is_(None))
        ).all()
    assert [r.challenge_id for r in open_rows] == [second]  # one open challenge per user
    for _ in range(3):
        assert _challenge(client, "bush").status_code == 201
    assert _failures(client, "bush") == 4
    locked = _challenge(client, "bush")  # closes the 5th unanswered one: locked out
    _assert_error(locked, 429, "locked_out")
    assert int(locked.headers["Retry-After"]) > 0
    _assert_error(_challenge(client, "bush"), 429, "locked_out")


def test_challenge_requests_are_rate_limited_per_user(settings, face_engine) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    limited = settings.model_copy(
        update={
            "liveness_challenges_per_window": 2,
            "liveness_challenge_window_s": 600,
            "lockout_max_failures": 50,
        }
    )
    with TestClient(create_app(limited, face_engine=face_engine), raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = limited.admin_key_file.read_text().strip()
        _enroll(client, "bush", BUSH)
        _enroll(client, "powell", POWELL)
        assert _challenge(client, "bush").status_code == 201
        assert _challenge(client, "bush").status_code == 201
        refused = _challenge(client, "bush")
        _assert_error(refused, 429, "challenge_rate_limited")
        assert 590 <= int(refused.headers["Retry-After"]) <= 601
        assert _challenge(client, "powell").status_code == 201  # per user, not per key


def test_challenge_for_an_unknown_or_invalid_user(client) -> None:
    _assert_error(_challenge(client, "ghost"), 404, "unknown_user")
    _assert_error(_challenge(client, "not valid!"), 422, "invalid_user_id")


def test_unknown_foreign_used_and_expired_challenges_have_their_own_reasons(client) -> None:
    _enroll(client, "bush", BUSH)
    _enroll(client, "powell", POWELL)
    _assert_error(_burst(client, "bush", "no-such-challenge", _blank_frames()), 404, "unknown_challenge")

    challenge_id = _challenge(client, "bush").json()["challenge_id"]
    _assert_error(_burst(client, "powell", challenge_id, _blank_frames()), 403, "challenge_user_mismatch")
    # The stranger did not burn it: the user's own first answer is judged (no face in blank frames) ...
    _assert_error(_burst(client, "bush", challenge_id, _blank_frames()), 422, "no_face")
    # ... and consumed it.
    _assert_error(_burst(client, "bush", challenge_id, _blank_frames()), 409, "challenge_used")

    expired_id = _challenge(client, "bush").json()["challenge_id"]
    with client.app.state.session_factory() as session:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.execute(
            update(LivenessChallenge)
            .where(LivenessChallenge.challenge_id == expired_id)
            .values(expires_at=past)
        )
        session.commit()
    before = _failures(client, "bush")
    _assert_error(_burst(client, "bush", expired_id, _blank_frames()), 409, "challenge_expired")
    assert _failures(client, "bush") == before + 1  # an abandoned challenge is a failed attempt ...
    _assert_error(_burst(client, "bush", expired_id, _blank_frames()), 409, "challenge_used")
    assert _failures(client, "bush") == before + 1  # ... counted once


def test_concurrent_answers_consume_a_challenge_once(client) -> None:
    _enroll(client, "bush", BUSH)
    challenge_id = _challenge(client, "bush").json()["challenge_id"]
    reasons: list[str] = []
    lock = threading.Lock()

    def answer() -> None:
        response = _burst(client, "bush", challenge_id, _blank_frames())
        with lock:
            reasons.append(response.json()["reason"])

    threads = [threading.Thread(target=answer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reasons) == ["challenge_used"] * 3 + ["no_face"]  # exactly one got past the consume


def test_burst_limits_and_field_combinations(client) -> None:
    _enroll(client, "bush", BUSH)
    challenge_id = _challenge(client, "bush").json()["challenge_id"]
    _assert_error(_burst(client, "bush", challenge_id, _blank_frames(3)), 422, "too_few_frames")
    challenge_id = _challenge(client, "bush").json()["challenge_id"]
    max_frames = client.app.state.settings.liveness_max_frames
    _assert_error(_burst(client, "bush", challenge_id, _blank_frames(max_frames + 1)), 413, "too_many_files")
    # frames without a challenge, a challenge without frames: neither is a valid request
    files = [("frames", ("f.jpg", data, "image/jpeg")) for data in _blank_frames()]
    _assert_error(client.post("/verify", data={"user_id": "bush"}, files=files), 422, "missing_field")
    no_frames = client.post("/verify", data={"user_id": "bush", "challenge_id": "x"})
    _assert_error(no_frames, 422, "missing_field")


def test_liveness_required_refuses_a_plain_verify(settings, face_engine) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    strict = settings.model_copy(update={"liveness_required": True})
    with TestClient(create_app(strict, face_engine=face_engine), raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = strict.admin_key_file.read_text().strip()
        _enroll(client, "bush", BUSH)
        plain = client.post(
            "/verify", data={"user_id": "bush"}, files={"image": ("p.jpg", lfw_bytes(*BUSH), "image/jpeg")}
        )
        _assert_error(plain, 422, "liveness_required")
        assert _challenge(client, "bush").status_code == 201


def _photo_attack(steps: list[str], seed: int) -> list[bytes]:
    """An LFW still of the user printed and tilted to act out `steps` (render.py), as JPEG frames."""
    import numpy as np
    from service_testdata import rgb_of

    from faceverify.liveness import attacks, render

    rng = np.random.default_rng(seed)
    photo = rgb_of(lfw_bytes("George_W_Bush", 2))
    poses = []  # the photo turns for the head steps and stays put for the actions (it cannot act them)
    for step, strength in attacks.act_schedule(steps):
        yaw, pitch = attacks.POSE_OF.get(step, (0, 0))
        poses.append((35.0 * yaw * strength, 35.0 * pitch * strength, 1.0))
    return [render.jpeg(frame) for frame in render.photo_attack_frames(photo, poses, rng)]


@pytest.mark.slow
def test_tilted_photo_acting_out_the_steps_is_refused_and_cannot_be_replayed(client) -> None:
    _enroll(client, "bush", BUSH)
    challenge = _challenge(client, "bush").json()
    frames = _photo_attack(challenge["steps"], seed=3)
    response = _burst(client, "bush", challenge["challenge_id"], frames)
    assert response.status_code == 200, response.text
    body = response.json()
    liveness = body["liveness"]
    assert body["verified"] is False and liveness["passed"] is False
    assert liveness["steps"] == challenge["steps"] and liveness["frames"] == len(frames)
    assert liveness["frames_with_face"] >= 0.8 * len(frames)
    # The first failed check ends the judging: a still photo cannot blink or open its mouth, so the
    # steps check refuses it (and the later checks do not run: no tower pass for an attack).
    assert liveness["reason"].startswith("steps:"), liveness
    assert liveness["checks"]["steps"]["passed"] is False, liveness["checks"]["steps"]
    assert (
        liveness["checks"]["fresh"]["passed"] is True and liveness["checks"]["duplicates"]["passed"] is True
    )
    assert "rigidity" not in liveness["checks"] and "continuity" not in liveness["checks"]
    # The same frames again, against a new challenge: refused as a replay before anything else.
    again = _burst(client, "bush", _challenge(client, "bush").json()["challenge_id"], frames).json()
    assert again["liveness"]["reason"] == "fresh:replayed_bytes" and again["verified"] is False


def test_a_challenge_is_bound_to_the_api_key_that_asked_for_it(client) -> None:
    """The security layer puts the key's name on request.state; the store refuses another key."""
    from service.errors import Forbidden
    from service.liveness.challenges import consume_challenge, issue_challenge
    from service.storage.tables import User

    _enroll(client, "bush", BUSH)
    with client.app.state.session_factory() as session:
        user = session.scalar(select(User).where(User.user_id == "bush"))
        issued = issue_challenge(session, user, 30, api_key_name="kiosk-1")
        with pytest.raises(Forbidden) as refused:
            consume_challenge(session, issued.challenge_id, user, api_key_name="kiosk-2")
        assert refused.value.reason == "challenge_key_mismatch"
        assert consume_challenge(session, issued.challenge_id, user, api_key_name="kiosk-1") == issued.steps
    # Over HTTP without a key (no security layer on this branch) the same challenge is refused too.
    _assert_error(_burst(client, "bush", issued.challenge_id, _blank_frames()), 403, "challenge_key_mismatch")
