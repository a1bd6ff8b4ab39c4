"""A stored embedding that fails authentication (tampered, or copied from another user's row) never
votes and never crashes a request (issue 8), over real HTTP on SQLite and PostgreSQL.

Each test enrols real LFW photos through the app behind a loopback socket (`live_app`), then plays
an attacker (or a bad restore) with write access to the database: it flips one byte of a row's
sealed embedding, or copies another user's sealed embedding onto the row. Before this was handled,
every verify of such a user answered a logged 500. Now the unreadable rows are left out of the
comparison (logged once per request at ERROR with user and image ids, audited, counted in
`faceverify_unreadable_embeddings_total`), and a user with no readable row gets 409
`stored_data_unreadable`. `faceverify store check` lists the rows, `faceverify reembed` recomputes
them from the (still authentic) photos.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveApp
from prometheus_client import REGISTRY
from service_testdata import lfw_bytes
from sqlalchemy import select, update

from service.cli.main import main as cli_main
from service.storage.crypto import HEADER_BYTES, KEY_FILE_NAME
from service.storage.tables import Image

pytestmark = pytest.mark.lfw

BUSH = [("George_W_Bush", 1), ("George_W_Bush", 2)]
BLAIR = [("Tony_Blair", 2), ("Tony_Blair", 3)]
METRIC = "faceverify_unreadable_embeddings_total"


def _http(live: LiveApp) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers=live.headers, timeout=60)


def _enrol(http: httpx.Client, user_id: str, photos: list[tuple[str, int]]) -> list[int]:
    files = [("images", (f"{p}_{n}.jpg", lfw_bytes(p, n), "image/jpeg")) for p, n in photos]
    response = http.post("/enroll", data={"user_id": user_id}, files=files)
    assert response.status_code == 201, response.text
    return [int(e["image_id"]) for e in response.json()["enrolled"]]


def _verify(http: httpx.Client, user_id: str, photo: tuple[str, int]) -> httpx.Response:
    probe = {"image": ("probe.jpg", lfw_bytes(*photo), "image/jpeg")}
    return http.post("/verify", data={"user_id": user_id}, files=probe)


def _flip_a_ciphertext_byte(live: LiveApp, image_id: int) -> None:
    """One bit of the sealed embedding's ciphertext changed in place (header left intact)."""
    with live.app.state.session_factory() as session:
        blob = bytearray(session.scalars(select(Image.embedding).where(Image.id == image_id)).one())
        blob[HEADER_BYTES + 5] ^= 0x01
        session.execute(update(Image).where(Image.id == image_id).values(embedding=bytes(blob)))
        session.commit()


def _copy_embedding(live: LiveApp, source_id: int, target_id: int) -> None:
    """Another row's sealed embedding (a valid blob, of another user and photo) copied onto a row."""
    with live.app.state.session_factory() as session:
        blob = session.scalars(select(Image.embedding).where(Image.id == source_id)).one()
        session.execute(update(Image).where(Image.id == target_id).values(embedding=blob))
        session.commit()


def _both_blair_rows_unreadable(live: LiveApp, http: httpx.Client) -> tuple[int, int, int]:
    """Enrol Bush and Blair; Blair's first row gets Bush's embedding copied in, his second a flipped
    ciphertext byte. Returns (bush row, swapped Blair row, flipped Blair row)."""
    [bush_row, _] = _enrol(http, "bush", BUSH)
    swapped, flipped = _enrol(http, "blair", BLAIR)
    _copy_embedding(live, bush_row, swapped)
    _flip_a_ciphertext_byte(live, flipped)
    return bush_row, swapped, flipped


def _metric(reason: str) -> float:
    return REGISTRY.get_sample_value(METRIC, {"reason": reason}) or 0.0


def _unreadable_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and "cannot be read" in r.getMessage()]


def _key_material(live: LiveApp) -> list[str]:
    """What must never reach a log: the data keys (base64 as stored, and their raw bytes' hex)."""
    key_file = Path(live.app.state.settings.data_dir) / KEY_FILE_NAME
    keys = list(json.loads(key_file.read_text())["keys"].values())
    return keys + [base64.b64decode(k).hex() for k in keys]


def _latest_verify_audit(http: httpx.Client, user_id: str) -> dict[str, Any]:
    response = http.get("/audit", params={"user_id": user_id, "action": "verify", "limit": 1})
    assert response.status_code == 200, response.text
    return dict(response.json()["entries"][0])


def test_a_tampered_embedding_is_left_out_logged_audited_and_counted(
    live_app: LiveApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with _http(live_app) as http:
        tampered, intact = _enrol(http, "bush", BUSH)
        _flip_a_ciphertext_byte(live_app, tampered)
        before = _metric("authentication_failed")
        caplog.clear()

        # The tampered row's own photo: that row is not compared at all, so nothing votes.
        own = _verify(http, "bush", BUSH[0])
        assert own.status_code == 200, own.text
        assert (own.json()["comparisons"], own.json()["votes"], own.json()["verified"]) == (1, 0, False)
        # The intact row still works: one comparison, one vote, verified.
        other = _verify(http, "bush", BUSH[1])
        assert other.status_code == 200, other.text
        assert (other.json()["comparisons"], other.json()["votes"], other.json()["verified"]) == (1, 1, True)

        records = _unreadable_logs(caplog)
        assert len(records) == 2, [r.getMessage() for r in records]  # once per request, no traceback
        for record in records:
            text = record.getMessage()
            assert "user 'bush'" in text and f"image ids [{tampered}]" in text, text
            assert record.exc_info is None
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert not [k for k in _key_material(live_app) if k in logged]
        assert _metric("authentication_failed") - before == 2
        entry = _latest_verify_audit(http, "bush")
        assert entry["outcome"] == "ok" and entry["summary"]["unreadable_images"] == [tampered]
        assert entry["summary"]["comparisons"] == 1


def test_another_users_embedding_copied_onto_a_row_never_votes_for_that_face(live_app: LiveApp) -> None:
    with _http(live_app) as http:
        [bush_row, _] = _enrol(http, "bush", BUSH)
        swapped, intact = _enrol(http, "blair", BLAIR)
        _copy_embedding(live_app, bush_row, swapped)  # Bush's face planted on Blair's account
        planted = _verify(http, "blair", BUSH[0])
        assert planted.status_code == 200, planted.text
        body = planted.json()
        assert (body["verified"], body["votes"], body["comparisons"]) == (False, 0, 1)
        assert _verify(http, "blair", BLAIR[1]).json()["verified"] is True  # the intact row, alone

        # No readable row left: a clear 409 that tells the operator what to do, not a 500.
        _copy_embedding(live_app, bush_row, intact)
        for photo in (BUSH[0], BLAIR[0]):
            refused = _verify(http, "blair", photo)
            assert refused.status_code == 409, refused.text
            assert refused.json()["reason"] == "stored_data_unreadable"
            assert "faceverify store check" in refused.json()["detail"]
        entry = _latest_verify_audit(http, "blair")
        assert entry["outcome"] == "rejected" and entry["reason"] == "stored_data_unreadable"
        assert sorted(entry["summary"]["unreadable_images"]) == sorted([swapped, intact])
        bush = _verify(http, "bush", BUSH[0]).json()  # the source rows, and other users, unaffected
        assert (bush["comparisons"], bush["votes"]) == (2, 1)


def test_re_enrolling_the_same_photos_repairs_unreadable_rows_in_place(live_app: LiveApp) -> None:
    """The 409's advice, "re-enrol the user", must work even though re-sending a stored photo is
    idempotent: the same ids come back, with a fresh embedding and (if needed) photo file."""
    with _http(live_app) as http:
        bush_row, swapped, flipped = _both_blair_rows_unreadable(live_app, http)
        store = live_app.app.state.store
        with live_app.app.state.session_factory() as session:
            path = session.scalars(select(Image.path).where(Image.id == flipped)).one()
        sealed = bytearray(store.absolute(path).read_bytes())
        sealed[HEADER_BYTES + 5] ^= 0x01  # its photo file too
        store.absolute(path).write_bytes(bytes(sealed))
        assert _verify(http, "blair", BLAIR[0]).status_code == 409

        assert _enrol(http, "blair", BLAIR) == [swapped, flipped]  # idempotent: the same rows
        for photo in BLAIR:
            fixed = _verify(http, "blair", photo)
            assert fixed.status_code == 200, fixed.text
            assert (fixed.json()["comparisons"], fixed.json()["votes"]) == (2, 1)
        with live_app.app.state.session_factory() as session:
            rows = list(session.scalars(select(Image).where(Image.id.in_([swapped, flipped]))))
        for row in rows:
            row.vector(store.keyring)
            assert store.read_photo(row.path, row.user_pk, row.sha256)


def test_a_liveness_burst_against_unreadable_rows_is_a_409_not_a_500(live_app: LiveApp) -> None:
    with _http(live_app) as http:
        [only] = _enrol(http, "blair", BLAIR[:1])
        _flip_a_ciphertext_byte(live_app, only)
        challenge = http.post("/liveness/challenge", data={"user_id": "blair"})
        assert challenge.status_code == 201, challenge.text
        frames = [("frames", (f"f{i}.jpg", lfw_bytes(*BLAIR[1]), "image/jpeg")) for i in range(8)]
        form = {"user_id": "blair", "challenge_id": challenge.json()["challenge_id"]}
        burst = http.post("/verify", data=form, files=frames)
        assert burst.status_code == 409, burst.text
        assert burst.json()["reason"] == "stored_data_unreadable"


def test_store_check_lists_unreadable_rows_rotation_skips_them_and_reembed_restores_them(
    live_app: LiveApp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's way out, with the real CLI: find the rows, keep rotating keys safely, repair."""
    settings = live_app.app.state.settings
    monkeypatch.setenv("FACEVERIFY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FACEVERIFY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FACEVERIFY_MODEL_DIR", str(settings.model_dir))
    key_path = Path(settings.data_dir) / KEY_FILE_NAME
    with _http(live_app) as http:
        bush_row, swapped, flipped = _both_blair_rows_unreadable(live_app, http)
        store = live_app.app.state.store
        with live_app.app.state.session_factory() as session:
            bush_photo = session.scalars(select(Image.path).where(Image.id == bush_row)).one()
        photo_file = store.absolute(bush_photo)
        sealed = bytearray(photo_file.read_bytes())
        sealed[HEADER_BYTES + 5] ^= 0x01  # and one photo file tampered too
        photo_file.write_bytes(bytes(sealed))
        unreadable = ((swapped, "embedding"), (flipped, "embedding"), (bush_row, "photo"))

        capsys.readouterr()
        assert cli_main(["store", "check"]) == 1
        out = capsys.readouterr().out
        for image_id, what in unreadable:
            assert f"image {image_id} " in out and f"stored {what} cannot be read" in out, out
        assert cli_main(["store", "check", "--repair"]) == 1  # never deleted: a wrong key would lose data
        with live_app.app.state.session_factory() as session:
            assert len(session.scalars(select(Image.id)).all()) == 4

        # A key rotation re-seals what it can, reports the rest, and keeps the old key for them.
        capsys.readouterr()
        assert cli_main(["encryption", "rotate"]) == 1
        out = capsys.readouterr().out
        assert all(f"image {image_id}: its stored {what}" in out for image_id, what in unreadable), out
        assert len(json.loads(key_path.read_text())["keys"]) == 2

        # reembed recomputes Blair's two embeddings from his (authentic) photos.
        assert cli_main(["reembed"]) == 0
        assert "re-embedded 2 image(s)" in capsys.readouterr().out
        for photo in BLAIR:
            fixed = _verify(http, "blair", photo)
            assert fixed.status_code == 200, fixed.text
            assert (fixed.json()["comparisons"], fixed.json()["votes"]) == (2, 1)
        assert cli_main(["store", "check"]) == 1  # Bush's tampered photo is still reported
        out = capsys.readouterr().out
        assert f"image {bush_row} " in out
        assert f"image {swapped} " not in out and f"image {flipped} " not in out

        # A photo cannot be recomputed: the operator deletes that image; then all is clean and the
        # rotation finishes, retiring the old key.
        assert http.delete(f"/users/bush/images/{bush_row}").status_code == 200
        assert cli_main(["store", "check"]) == 0
        assert cli_main(["encryption", "rotate"]) == 0
        assert "retired key(s)" in capsys.readouterr().out
        assert len(json.loads(key_path.read_text())["keys"]) == 1
        assert _verify(http, "blair", BLAIR[0]).json()["votes"] == 1
