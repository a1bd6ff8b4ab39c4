"""What the browser UI needs from the API (issue 21), SQLite and PostgreSQL: the pages under /ui/
(no key, their own strict CSP, off with FACEVERIFY_UI_ENABLED=false), keys over REST (admin,
audited, the CLI's rules), the frame check, compare at every level, photo thumbnails (each view
audited), user search, the audit chain check, the liveness burst plan, and group-photo enrolment
by choosing the face."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_testdata import lfw_bytes

from service.app import create_app
from service.http.middleware import UI_CSP

pytestmark = pytest.mark.lfw

GROUP = ("George_W_Bush", 20)  # two faces of comparable size: enrolment refuses it as multiple_faces
GROUP_BOXES = [[94, 72, 86, 118], [-3, 70, 60, 111]]  # YuNet's boxes, largest first


def _blank() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _key(client: TestClient, name: str, *scopes: str) -> dict[str, str]:
    answer = client.post("/keys", json={"name": name, "scopes": list(scopes)})
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["secret"]}


def _audit(client: TestClient, **filters: object) -> list[dict]:
    return client.get("/audit", params=filters).json()["entries"]


# ------------------------------------------------------------------------------------------- pages


def test_the_pages_load_without_a_key_under_their_own_strict_csp(client) -> None:
    page = client.get("/ui/", headers={"X-API-Key": ""})
    assert page.status_code == 200 and 'type="module" src="js/home.js"' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert csp == UI_CSP
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe" not in csp
    assert page.headers["Permissions-Policy"].startswith("camera=(self)")
    assert page.headers["X-Frame-Options"] == "DENY"
    script = client.get("/ui/js/kiosk.js", headers={"X-API-Key": ""})
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    missing = client.get("/ui/js/no-such-file-123.js", headers={"X-API-Key": ""})
    assert missing.status_code == 404
    # Metrics never label the pages by their raw path (a scan of /ui/<random> cannot add series).
    from service.runtime import metrics

    routes = {s.labels["route"] for f in metrics.HTTP_REQUESTS.collect() for s in f.samples}
    assert routes and not any("no-such-file" in r or r.startswith("/ui/") for r in routes)
    # The API keeps its own policy (nothing may load from a JSON answer), and still needs a key.
    api = client.get("/users", headers={"X-API-Key": ""})
    assert api.status_code == 401 and api.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Permissions-Policy" not in api.headers


def test_no_page_has_inline_script_or_style_or_a_remote_resource() -> None:
    """What the CSP enforces in the browser, checked in the files too (a violation would only show
    as a broken page)."""
    from service.ui import STATIC_DIR

    pages = sorted(STATIC_DIR.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "kiosk.html", "compare.html", "console.html"}
    for page in pages:
        text = page.read_text()
        assert "<style" not in text and " style=" not in text and "javascript:" not in text, page
        assert "<script>" not in text and all(
            'type="module" src="js/' in line for line in text.splitlines() if "<script" in line
        ), page
        assert "http://" not in text and "https://" not in text, page  # nothing from a CDN
    for module in STATIC_DIR.rglob("*.js"):
        text = module.read_text()
        assert ".innerHTML" not in text and "eval(" not in text and "localStorage." not in text, module
        assert "https://" not in text, module


def test_ui_off(settings, face_engine) -> None:
    with TestClient(
        create_app(settings.model_copy(update={"ui_enabled": False}), face_engine=face_engine)
    ) as off:
        assert off.get("/ui/").status_code == 401  # not public any more: an unknown path
        key = {"X-API-Key": settings.admin_key_file.read_text().strip()}
        assert off.get("/ui/", headers=key).status_code == 404


# ------------------------------------------------------------------------------------------- keys


def test_keys_over_rest_follow_the_cli_rules_and_are_audited(client) -> None:
    created = client.post("/keys", json={"name": "door-kiosk", "scopes": ["verify", "enroll"]})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "door-kiosk" and body["scopes"] == ["enroll", "verify"]
    secret = body["secret"]
    assert secret.startswith("fvk_")
    me = client.get("/keys/me", headers={"X-API-Key": secret})
    assert me.json() == {"name": "door-kiosk", "scopes": ["enroll", "verify"]}
    listed = {k["name"]: k for k in client.get("/keys").json()["keys"]}
    assert listed["door-kiosk"]["revoked"] is None and "secret" not in listed["door-kiosk"]
    assert secret not in client.get("/keys").text
    # The CLI's rules: unique names, a name pattern, known scopes.
    assert (
        client.post("/keys", json={"name": "door-kiosk", "scopes": ["verify"]}).json()["reason"]
        == "key_exists"
    )
    assert (
        client.post("/keys", json={"name": "bad name", "scopes": ["verify"]}).json()["reason"]
        == "invalid_key_name"
    )
    assert client.post("/keys", json={"name": "x", "scopes": ["root"]}).json()["reason"] == "invalid_scopes"
    assert client.post("/keys", json={"name": "x", "scopes": []}).json()["reason"] == "invalid_scopes"
    # Only admin keys manage keys.
    assert client.get("/keys", headers={"X-API-Key": secret}).status_code == 403
    assert (
        client.post(
            "/keys", json={"name": "y", "scopes": ["admin"]}, headers={"X-API-Key": secret}
        ).status_code
        == 403
    )
    assert client.delete("/keys/door-kiosk", headers={"X-API-Key": secret}).status_code == 403
    # Revoked: refused from the next request on, still listed.
    assert client.delete("/keys/door-kiosk").json() == {"name": "door-kiosk", "revoked": True}
    assert client.get("/keys/me", headers={"X-API-Key": secret}).json()["reason"] == "invalid_api_key"
    assert {k["name"]: k for k in client.get("/keys").json()["keys"]}["door-kiosk"]["revoked"]
    assert client.delete("/keys/nobody").json()["reason"] == "unknown_key"
    entries = _audit(client, key_name="bootstrap-admin")
    actions = [(e["action"], e["outcome"], e["summary"].get("name")) for e in entries]
    assert ("key_create", "ok", "door-kiosk") in actions and ("key_revoke", "ok", "door-kiosk") in actions
    assert ("key_create", "rejected", "door-kiosk") in actions  # the duplicate, refused and recorded
    assert secret not in str(entries)


# ------------------------------------------------------------------------------------ frame check


def test_frame_check_reports_faces_quality_and_the_enrolment_verdict(client) -> None:
    kiosk = _key(client, "kiosk", "enroll")
    one = client.post("/faces", files={"image": ("a.jpg", lfw_bytes("Colin_Powell", 1))}, headers=kiosk)
    assert one.status_code == 200
    body = one.json()
    assert (body["width"], body["height"]) == (250, 250)
    assert body["guidance"] is None and len(body["faces"]) >= 1
    assert body["faces"][0]["reason"] is None and body["faces"][0]["quality"]["face_width"] > 40
    empty = client.post("/faces", files={"image": ("b.jpg", _blank())}, headers=kiosk).json()
    assert empty["guidance"] == "no_face" and empty["faces"] == []
    group = client.post("/faces", files={"image": ("g.jpg", lfw_bytes(*GROUP))}, headers=kiosk).json()
    assert group["guidance"] == "multiple_faces" and [f["box"] for f in group["faces"]] == GROUP_BOXES
    bad = client.post("/faces", files={"image": ("c.jpg", b"not an image")}, headers=kiosk)
    assert bad.status_code == 422 and bad.json()["reason"] == "not_an_image"
    manage = _key(client, "desk", "manage")
    assert client.post("/faces", files={"image": ("a.jpg", b"x")}, headers=manage).status_code == 403


# ---------------------------------------------------------------------------------------- compare


def test_compare_decides_at_every_level_and_shows_scores_only_to_admin(client) -> None:
    photo = lfw_bytes("Colin_Powell", 1)
    files = {"image_a": ("a.jpg", photo), "image_b": ("b.jpg", lfw_bytes(*GROUP))}
    verify = _key(client, "door", "verify")
    answer = client.post("/compare", files=files, headers=verify)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["similarity"] is None  # a verify key: decisions, not scores
    assert len(body["b"]["faces"]) == 2 and body["b"]["chosen"] == 0
    card = client.app.state.face_engine.card
    assert len(body["levels"]) == len(card.get("operating_points") or [])
    admin = client.post("/compare", files={"image_a": ("a.jpg", photo), "image_b": ("b.jpg", photo)}).json()
    assert admin["similarity"] is not None and admin["similarity"] > 0.9  # the same photo (tiny model: ~0.95)
    no_face = client.post("/compare", files={"image_a": ("a.jpg", photo), "image_b": ("b.jpg", _blank())})
    assert no_face.status_code == 422 and no_face.json()["reason"] == "no_face"


def test_levels_follow_the_vote_rule_at_each_operating_point() -> None:
    from service.inspect.service import levels_of

    card = {
        "operating_points": [
            {"far": 1e-4, "detection_threshold": 0.8, "verification_threshold": 0.5, "frr": 0.02},
            {"far": 1e-2, "detection_threshold": 0.4, "verification_threshold": 0.5, "frr": 0.005},
        ]
    }
    levels = levels_of(card, 0.6)
    assert [(lv.target_far, lv.same, lv.frr) for lv in levels] == [(1e-2, True, 0.005), (1e-4, False, 0.02)]
    assert levels_of({}, 0.6) == []


# ----------------------------------------------------------------------------------- users, audit


def test_a_photo_is_decrypted_on_request_and_every_view_is_audited(client) -> None:
    enrolled = client.post(
        "/enroll", data={"user_id": "colin"}, files=[("images", ("1.jpg", lfw_bytes("Colin_Powell", 1)))]
    ).json()["enrolled"]
    image_id = enrolled[0]["image_id"]
    desk = _key(client, "desk", "manage")
    shown = client.get(f"/users/colin/images/{image_id}/thumbnail", headers=desk)
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert shown.headers["Cache-Control"] == "no-store"
    thumb = Image.open(io.BytesIO(shown.content))
    assert max(thumb.size) <= 256 and thumb.size == (250, 250)  # LFW photos are already small
    assert client.get(f"/users/colin/images/{image_id + 99}/thumbnail", headers=desk).status_code == 404
    views = _audit(client, action="view_image")
    assert [(v["key_name"], v["outcome"], v["summary"]["image_id"]) for v in views] == [
        ("desk", "rejected", image_id + 99),
        ("desk", "ok", image_id),
    ]
    door = _key(client, "door", "verify")
    assert client.get(f"/users/colin/images/{image_id}/thumbnail", headers=door).status_code == 403


def test_users_search_by_prefix_and_the_chain_check(client) -> None:
    for user in ("anna", "anne", "bob", "an_x", "anzy"):
        client.post(
            "/enroll", data={"user_id": user}, files=[("images", ("1.jpg", lfw_bytes("Colin_Powell", 1)))]
        )
    found = client.get("/users", params={"q": "ann"}).json()
    assert [u["user_id"] for u in found["users"]] == ["anna", "anne"] and found["total"] == 2
    # `_` is a character here, not SQL LIKE's wildcard.
    assert [u["user_id"] for u in client.get("/users", params={"q": "an_"}).json()["users"]] == ["an_x"]
    chain = client.get("/audit/chain").json()
    assert chain["ok"] is True and chain["checked"] == chain["last_seq"] >= 5 and chain["bad_seq"] is None


def test_a_challenge_tells_the_client_how_to_record_the_burst(client) -> None:
    client.post(
        "/enroll", data={"user_id": "colin"}, files=[("images", ("1.jpg", lfw_bytes("Colin_Powell", 1)))]
    )
    issued = client.post("/liveness/challenge", data={"user_id": "colin"}).json()
    assert (issued["frame_rate"], issued["neutral_s"], issued["step_s"]) == (6.0, 1.0, 2.0)
    assert issued["max_frames"] == client.app.state.settings.liveness_max_frames
    longest = issued["neutral_s"] + 3 * issued["step_s"]
    assert longest * issued["frame_rate"] <= issued["max_frames"]  # three steps fit in one burst


# ---------------------------------------------------------------------------------- group photos


def test_a_group_photo_is_enrolled_by_choosing_the_face(client) -> None:
    photo = lfw_bytes(*GROUP)
    refused = client.post("/enroll", data={"user_id": "bush"}, files=[("images", ("g.jpg", photo))])
    assert refused.status_code == 422
    rejection = refused.json()["detail"]["rejected"][0]
    assert rejection == {"filename": "g.jpg", "reason": "multiple_faces", "index": 0, "faces": GROUP_BOXES}
    # By index into the refusal's list ...
    chosen = client.post(
        "/enroll", data={"user_id": "bush", "faces": ["0"]}, files=[("images", ("g.jpg", photo))]
    )
    assert chosen.status_code == 201, chosen.text
    stored = client.get("/users/bush").json()["images"]
    assert [i["box"] for i in stored] == [GROUP_BOXES[0]]
    # ... or by a box (the other face, here), next to a photo left to the usual rule.
    other = client.post(
        "/enroll",
        data={"user_id": "aide", "faces": ["-1,72,58,108", ""]},
        files=[("images", ("g.jpg", photo)), ("images", ("c.jpg", lfw_bytes("Colin_Powell", 2)))],
    )
    assert other.status_code == 201 and len(other.json()["enrolled"]) == 2, other.text
    assert GROUP_BOXES[1] in [i["box"] for i in client.get("/users/aide").json()["images"]]
    # A choice naming no face is refused with the boxes again; malformed choices are a 422.
    wrong = client.post(
        "/enroll", data={"user_id": "bush2", "faces": ["7"]}, files=[("images", ("g.jpg", photo))]
    )
    assert wrong.json()["detail"]["rejected"][0]["reason"] == "invalid_face_choice"
    assert wrong.json()["detail"]["rejected"][0]["faces"] == GROUP_BOXES
    for faces in (["a"], ["0", "1"]):
        bad = client.post(
            "/enroll", data={"user_id": "bush3", "faces": faces}, files=[("images", ("g.jpg", photo))]
        )
        assert bad.status_code == 422 and bad.json()["reason"] == "invalid_face_choice"
    assert client.get("/users/bush3").status_code == 404


def test_phone_sized_photos_fit_the_frame_check_and_compare(client) -> None:
    """Their request caps follow their uploads (one photo; two photos), not the small default cap of
    the JSON routes: a 1.5 MB photo is ordinary from a phone."""
    rgb = np.asarray(Image.open(io.BytesIO(lfw_bytes("Colin_Powell", 1))).convert("RGB").resize((1500, 1500)))
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=95)
    big = buffer.getvalue()
    assert len(big) > 1024 * 1024
    checked = client.post("/faces", files={"image": ("big.jpg", big)})
    assert checked.status_code == 200, checked.text
    compared = client.post("/compare", files={"image_a": ("a.jpg", big), "image_b": ("b.jpg", big)})
    assert compared.status_code == 200, compared.text


def test_live_figures_count_this_process_decisions_and_latency(client) -> None:
    photo = lfw_bytes("Colin_Powell", 1)
    client.post("/enroll", data={"user_id": "colin"}, files=[("images", ("1.jpg", photo))])
    desk = _key(client, "desk", "manage")
    before = client.get("/stats", headers=desk).json()
    verified = client.post("/verify", data={"user_id": "colin"}, files={"image": ("p.jpg", photo)}).json()
    assert verified["verified"] is True
    after = client.get("/stats", headers=desk).json()
    assert after["decisions"].get("verified", 0) == before["decisions"].get("verified", 0) + 1
    assert after["requests"]["/verify"] == before["requests"].get("/verify", 0) + 1
    latency = after["latency_ms"]["/verify"]
    assert latency["p50"] is not None and 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
