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
STEP_NAMES = {"turn_left", "turn_right", "look_up", "look_down"}


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


def test_challenge_is_random_steps_stored_for_the_user(client) -> None:
    _enroll(client, "bush", BUSH)
    seen = set()
    for _ in range(12):
        response = _challenge(client, "bush")
        assert response.status_code == 201, response.text
        body = response.json()
        assert 2 <= len(body["steps"]) <= 3 and set(body["steps"]) <= STEP_NAMES
        assert len(set(body["steps"])) == len(body["steps"])
        assert body["expires_in_s"] == 30 and len(body["challenge_id"]) >= 24
        seen.add(tuple(body["steps"]))
    assert len(seen) > 3  # 36 possible sequences: 12 draws repeat little
    with client.app.state.session_factory() as session:
        rows = list(session.scalars(select(LivenessChallenge)))
    assert len(rows) == 12 and all(r.used_at is None and r.api_key_name == "bootstrap-admin" for r in rows)


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
    _assert_error(_burst(client, "bush", expired_id, _blank_frames()), 409, "challenge_expired")


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

    from faceverify.liveness import render, synthetic

    rng = np.random.default_rng(seed)
    photo = rgb_of(lfw_bytes("George_W_Bush", 2))
    poses = synthetic.step_pose_track(steps, rng, amplitude_deg=35.0)
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
    # The geometry refuses it: a plane's landmarks fit a homography, and head_pose sees no real turn.
    assert liveness["checks"]["depth"]["passed"] is False, liveness["checks"]["depth"]
    assert liveness["checks"]["steps"]["passed"] is False, liveness["checks"]["steps"]
    assert liveness["checks"]["fresh"]["passed"] is True
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
