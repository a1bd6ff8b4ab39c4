"""Issue 18 item 2 on SQLite and PostgreSQL: no account takeover by enrolment.

Before: an `enroll` key POSTed /enroll for an existing user_id with another person's photos and got
201; that person then verified as the user and the user failed. Now a new photo of an existing user
must verify against the user's current enrolment at the strictest calibrated level, else it is
rejected on its own (`not_same_person`, audited); a `manage` key may still add any photo (audited).

The tiny test model votes only for (re-encodings of) the very same photo, so "the same person" is a
re-encoded copy of the enrolled photo (a new sha256, the same face) and anybody else is a stranger.
"""

from __future__ import annotations

import json

import pytest
from service_testdata import jpeg, lfw_bytes, rgb_of
from sqlalchemy import func, select

from service.security import keys
from service.storage.tables import AuditEntry, Image

pytestmark = pytest.mark.lfw

COLIN = ("Colin_Powell", 1)
STRANGERS = [("George_W_Bush", 1), ("George_W_Bush", 2)]


def _make_key(client, name: str, *scopes: str) -> dict[str, str]:
    with client.app.state.session_factory() as session:
        return {"X-API-Key": keys.create_key(session, name, frozenset(scopes))}


def _post(client, user_id: str, photos: list[tuple[str, bytes]], headers: dict[str, str] | None = None):
    files = [("images", (name, data, "image/jpeg")) for name, data in photos]
    return client.post("/enroll", data={"user_id": user_id}, files=files, headers=headers)


def _lfw(photo: tuple[str, int]) -> tuple[str, bytes]:
    return f"{photo[0]}_{photo[1]}.jpg", lfw_bytes(*photo)


def _images(client, user_id: str) -> int:
    answer = client.get(f"/users/{user_id}")
    assert answer.status_code == 200, answer.text
    return len(answer.json()["images"])


def _last_enrol_audit(client) -> dict:
    with client.app.state.session_factory() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "enroll").order_by(AuditEntry.seq.desc())
        ).first()
    assert entry is not None
    return {
        "outcome": entry.outcome,
        "reason": entry.reason,
        "key": entry.key_name,
        **json.loads(entry.summary),
    }


def test_an_enroll_key_cannot_add_a_strangers_photos_to_an_existing_user(client) -> None:
    enroll_key = _make_key(client, "kiosk", "enroll")
    assert _post(client, "colin", [_lfw(COLIN)], enroll_key).status_code == 201  # a new user: any photos

    takeover = _post(client, "colin", [_lfw(p) for p in STRANGERS], enroll_key)
    assert takeover.status_code == 422, takeover.text
    assert takeover.json()["reason"] == "no_usable_image"
    assert [r["reason"] for r in takeover.json()["detail"]["rejected"]] == ["not_same_person"] * 2
    assert _images(client, "colin") == 1
    audit = _last_enrol_audit(client)
    assert (audit["outcome"], audit["reason"], audit["key"]) == ("rejected", "no_usable_image", "kiosk")
    assert audit["rejected"] == ["not_same_person"] * 2

    same_face = ("colin-again.jpg", jpeg(rgb_of(lfw_bytes(*COLIN)), quality=85))  # new bytes, same face
    mixed = _post(client, "colin", [same_face, _lfw(STRANGERS[0])], enroll_key)
    assert mixed.status_code == 201, mixed.text
    assert len(mixed.json()["enrolled"]) == 1
    assert mixed.json()["rejected"] == [
        {"filename": "George_W_Bush_1.jpg", "reason": "not_same_person", "index": 1, "faces": None}
    ]
    assert _images(client, "colin") == 2
    audit = _last_enrol_audit(client)
    assert audit["outcome"] == "ok" and audit["rejected"] == ["not_same_person"]
    assert audit["existing_user"] is True and audit["unmatched_allowed"] is False

    # Re-sending a stored photo stays idempotent for the enroll key.
    assert _post(client, "colin", [_lfw(COLIN)], enroll_key).status_code == 201
    with client.app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 2


def test_a_manage_key_may_add_unmatched_photos_audited(client) -> None:
    assert _post(client, "colin", [_lfw(COLIN)]).status_code == 201  # the client sends the admin key
    manage_key = _make_key(client, "ops", "enroll", "manage")
    added = _post(client, "colin", [_lfw(STRANGERS[0])], manage_key)
    assert added.status_code == 201 and len(added.json()["enrolled"]) == 1, added.text
    audit = _last_enrol_audit(client)
    assert audit["key"] == "ops" and audit["existing_user"] is True and audit["unmatched_allowed"] is True


def test_the_match_level_is_the_cards_strictest_unless_configured() -> None:
    from service.enrolment.service import match_thresholds

    points = [
        {"far": far, "detection_threshold": t, "verification_threshold": 0.5}
        for far, t in ((1e-2, 0.1), (1e-4, 0.9), (1e-6, 0.999))
    ]
    card = {"operating_points": points, "default_far": 1e-4, "loosest_far": 1e-2, "thresholds": {}}
    assert match_thresholds(card, None).detection == 0.999  # strictest by default
    assert match_thresholds(card, 1e-4).detection == 0.9  # FACEVERIFY_ENROL_MATCH_FAR
    assert match_thresholds(card, 0.5).detection == 0.999  # looser than the card allows: strictest
