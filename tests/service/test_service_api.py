"""The API over HTTP (ASGI TestClient, lifespan included), against SQLite and PostgreSQL.

Real LFW photos, the real face pipeline, a tiny but real SavedModel (an image compared with itself
votes; see training.export.export_tiny_test_model), real databases and the real image store.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import service_testdata as images
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.storage.tables import Image, User

pytestmark = pytest.mark.lfw

BUSH = ("George_W_Bush", 1)
POWELL = ("Colin_Powell", 6)
BLAIR = ("Tony_Blair", 2)  # _0001 shows a second person (60 px vs 92 px): multiple_faces since YuNet


def _files(*photos: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (name, data, "image/jpeg")) for name, data in photos]


def enroll(client, user_id: str, *photos: tuple[str, bytes]):
    return client.post("/enroll", data={"user_id": user_id}, files=_files(*photos))


def verify(client, user_id: str, photo: bytes, **form: object):
    data = {"user_id": user_id, **{k: str(v) for k, v in form.items()}}
    return client.post("/verify", data=data, files={"image": ("probe.jpg", photo, "image/jpeg")})


def _rows(client) -> list[Image]:
    with client.app.state.session_factory() as session:
        return list(session.scalars(select(Image).order_by(Image.id)))


def _users(client) -> list[str]:
    with client.app.state.session_factory() as session:
        return list(session.scalars(select(User.user_id).order_by(User.user_id)))


def _assert_error(response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason, body
    assert "detail" in body


# ------------------------------------------------------------------------------------ enrol / verify


def test_enroll_stores_file_row_and_embedding_and_is_idempotent(client, backend) -> None:
    photo = lfw_bytes(*BUSH)
    first = enroll(client, "george.bush", ("bush1.jpg", photo))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["user_id"] == "george.bush" and body["rejected"] == []
    [entry] = body["enrolled"]
    assert entry["sha256"] == hashlib.sha256(photo).hexdigest()

    [row] = _rows(client)
    assert row.id == entry["image_id"] and row.model_version == "tiny-test-1"
    vector = row.vector(client.app.state.keyring)
    assert vector.shape == (32,) and abs(float((vector**2).sum()) - 1.0) < 1e-4
    store = client.app.state.store
    assert store.read_photo(row.path, row.user_pk, row.sha256) == photo
    assert row.box_w > 40 and row.box_h > 40

    again = enroll(client, "george.bush", ("copy.jpg", photo), ("same-again.jpg", photo))
    assert again.status_code == 201
    assert [e["image_id"] for e in again.json()["enrolled"]] == [entry["image_id"]]
    assert len(_rows(client)) == 1 and len(store.files()) == 1


def test_verify_votes_with_the_enrolled_image_and_reports_every_field(client) -> None:
    photo = lfw_bytes(*BUSH)
    assert enroll(client, "bush", ("a.jpg", photo)).status_code == 201
    response = verify(client, "bush", photo)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verified"] is True and body["votes"] == 1 and body["comparisons"] == 1
    assert body["vote_ratio"] == 1.0 and body["best_similarity"] > 0.9
    assert body["detection_threshold"] == 0.5 and body["verification_threshold"] == 0.5
    assert body["model_version"] == "tiny-test-1" and body["elapsed_ms"] > 0
    assert len(body["face"]["box"]) == 4
    assert body["face"]["box"] == _rows(client)[0].box  # same photo, same face


def test_verify_someone_else_is_rejected(client) -> None:
    assert enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH))).status_code == 201
    body = verify(client, "bush", lfw_bytes(*BLAIR)).json()
    assert body["verified"] is False and body["votes"] == 0 and body["best_similarity"] < 0.5


def test_thresholds_may_be_tightened_not_loosened_below_the_floor(client) -> None:
    photo = lfw_bytes(*BUSH)
    enroll(client, "bush", ("a.jpg", photo))
    tight = verify(client, "bush", photo, detection_threshold=0.999999, verification_threshold=0.9)
    assert tight.status_code == 200
    assert tight.json()["detection_threshold"] == 0.999999 and tight.json()["verification_threshold"] == 0.9
    _assert_error(verify(client, "bush", photo, detection_threshold=0.1), 422, "threshold_below_floor")
    _assert_error(verify(client, "bush", photo, verification_threshold=0.0), 422, "threshold_below_floor")
    _assert_error(verify(client, "bush", photo, detection_threshold="abc"), 422, "invalid_request")


def test_each_enrolment_image_is_judged_on_its_own(client) -> None:
    photo = lfw_bytes(*BUSH)
    response = enroll(
        client,
        "mixed",
        ("good.jpg", photo),
        ("empty.jpg", b""),
        ("text.jpg", b"this is not an image at all"),
        ("truncated.jpg", images.truncated(lfw_bytes(*POWELL))),
        ("bomb.png", images.decompression_bomb_png()),
        ("huge.jpg", images.oversized_bytes(10 * 1024 * 1024 + 1)),
        ("blank.jpg", images.blank()),
        ("two.jpg", images.side_by_side(lfw_bytes(*BLAIR), lfw_bytes(*POWELL))),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert [e["sha256"] for e in body["enrolled"]] == [hashlib.sha256(photo).hexdigest()]
    assert {r["filename"]: r["reason"] for r in body["rejected"]} == {
        "empty.jpg": "empty",
        "text.jpg": "not_an_image",
        "truncated.jpg": "not_an_image",
        "bomb.png": "too_many_pixels",
        "huge.jpg": "too_large",
        "blank.jpg": "no_face",
        "two.jpg": "multiple_faces",
    }
    assert len(_rows(client)) == 1 and len(client.app.state.store.files()) == 1


def test_nothing_enrolled_is_422_and_creates_no_user(client) -> None:
    response = enroll(client, "nobody", ("blank.jpg", images.blank()), ("x.jpg", b"nope"))
    _assert_error(response, 422, "no_usable_image")
    assert {r["reason"] for r in response.json()["detail"]["rejected"]} == {"no_face", "not_an_image"}
    huge = images.oversized_bytes(11 * 2**20)
    _assert_error(enroll(client, "nobody", ("huge.jpg", huge)), 413, "no_usable_image")
    assert _users(client) == [] and _rows(client) == [] and client.app.state.store.files() == []
    _assert_error(client.get("/users/nobody"), 404, "unknown_user")


def test_exif_orientation_is_honoured(client) -> None:
    photo = lfw_bytes(*BUSH)
    response = enroll(client, "phone", ("sideways.jpg", images.rotated_with_exif(photo)))
    assert response.status_code == 201, response.text
    [row] = _rows(client)
    # The face box is in upright coordinates, where the upright photo has its face.
    upright = verify(client, "phone", photo).json()
    assert all(abs(a - b) <= 8 for a, b in zip(row.box, upright["face"]["box"], strict=True))
    assert upright["verified"] is True


# ------------------------------------------------------------------------------------- bad input


BAD_PROBES = {
    "empty": (lambda: b"", 422, "empty"),
    "not_an_image": (lambda: b"GIF89a but not really", 422, "not_an_image"),
    "truncated_jpeg": (lambda: images.truncated(lfw_bytes(*BUSH)), 422, "not_an_image"),
    "decompression_bomb": (images.decompression_bomb_png, 413, "too_many_pixels"),
    "over_10mb": (lambda: images.oversized_bytes(10 * 1024 * 1024 + 1), 413, "too_large"),
    "no_face": (images.blank, 422, "no_face"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROBES))
def test_verify_bad_images(client, case: str) -> None:
    make, status, reason = BAD_PROBES[case]
    enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH)))
    _assert_error(verify(client, "bush", make()), status, reason)


@pytest.mark.parametrize("user_id", ["", "has space", "slash/x", "é", "x" * 65, "semi;colon"])
def test_invalid_user_ids_are_422(client, user_id: str) -> None:
    photo = lfw_bytes(*BUSH)
    reason = "invalid_user_id" if user_id else "missing_field"
    _assert_error(enroll(client, user_id, ("a.jpg", photo)), 422, reason)
    _assert_error(verify(client, user_id, photo), 422, reason)
    assert _users(client) == []


def test_valid_odd_user_ids_work(client) -> None:
    photo = lfw_bytes(*BUSH)
    for user_id in ("..", ".", "a-b_c.d", "x" * 64):
        assert enroll(client, user_id, ("a.jpg", photo)).status_code == 201
    # "." and ".." are dot-segments that HTTP clients normalise away: percent-encode them in paths.
    assert client.get("/users/%2E%2E").json()["user_id"] == ".."
    assert client.delete("/users/%2E%2E").json() == {"user_id": "..", "deleted_images": 1}
    assert len(client.app.state.store.files()) == 3


def test_missing_fields_are_422(client) -> None:
    photo = lfw_bytes(*BUSH)
    _assert_error(client.post("/enroll", data={"user_id": "x"}), 422, "missing_field")
    _assert_error(client.post("/enroll", files=_files(("a.jpg", photo))), 422, "missing_field")
    _assert_error(client.post("/verify", data={"user_id": "x"}), 422, "missing_field")
    no_user = client.post("/verify", files={"image": ("a.jpg", photo, "image/jpeg")})
    _assert_error(no_user, 422, "missing_field")
    raw = client.post("/verify", content=b"raw", headers={"content-type": "image/jpeg"})
    _assert_error(raw, 422, "missing_field")
    # A text field where a file is expected.
    _assert_error(client.post("/verify", data={"user_id": "x", "image": "text"}), 422, "invalid_request")


def test_unknown_user_is_404(client) -> None:
    _assert_error(verify(client, "ghost", lfw_bytes(*BUSH)), 404, "unknown_user")


def test_oversized_bodies_are_refused(client) -> None:
    """A declared Content-Length over the cap is refused before reading; a chunked body without one
    is cut off by counting (the real-socket version of this, measuring how much the server reads,
    is in test_service_uvicorn.py)."""
    enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH)))
    limit = client.app.state.settings.max_request_bytes("/verify")
    multipart = {"content-type": "multipart/form-data; boundary=xyz"}

    def body():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="user_id"\r\n\r\nbush\r\n'
        yield boundary + b'Content-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        for _ in range(limit // (1024 * 1024) + 2):
            yield b"\0" * (1024 * 1024)

    _assert_error(client.post("/verify", content=body(), headers=multipart), 413, "too_large")
    declared = client.post("/verify", content=b"x", headers={**multipart, "content-length": str(limit + 1)})
    _assert_error(declared, 413, "too_large")


# ------------------------------------------------------------------------------------------ users


def test_users_listing_details_and_deletion(client) -> None:
    store = client.app.state.store
    for user_id, photo in (("carol", BUSH), ("alice", POWELL), ("bob", BLAIR)):
        assert enroll(client, user_id, ("p.jpg", lfw_bytes(*photo))).status_code == 201
    extra = enroll(client, "alice", ("q.jpg", lfw_bytes("Colin_Powell", 7))).json()["enrolled"][0]

    page = client.get("/users", params={"limit": 2}).json()
    assert page["total"] == 3 and [u["user_id"] for u in page["users"]] == ["alice", "bob"]
    assert page["users"][0]["image_count"] == 2 and page["users"][0]["model_versions"] == ["tiny-test-1"]
    assert [u["user_id"] for u in client.get("/users", params={"offset": 2}).json()["users"]] == ["carol"]
    _assert_error(client.get("/users", params={"limit": 0}), 422, "invalid_request")

    alice = client.get("/users/alice").json()
    assert alice["model_version"] == "tiny-test-1" and len(alice["images"]) == 2
    assert {"image_id", "sha256", "size", "box", "model_version", "created"} <= set(alice["images"][0])

    assert client.delete(f"/users/alice/images/{extra['image_id']}").json()["deleted_images"] == 1
    _assert_error(client.delete(f"/users/alice/images/{extra['image_id']}"), 404, "unknown_image")
    bob_image = client.get("/users/bob").json()["images"][0]["image_id"]
    _assert_error(client.delete(f"/users/alice/images/{bob_image}"), 404, "unknown_image")
    assert len(client.get("/users/alice").json()["images"]) == 1 and len(store.files()) == 3

    assert client.delete("/users/alice").json() == {"user_id": "alice", "deleted_images": 1}
    _assert_error(client.get("/users/alice"), 404, "unknown_user")
    _assert_error(client.delete("/users/alice"), 404, "unknown_user")
    assert len(store.files()) == 2 and len(_rows(client)) == 2 and _users(client) == ["bob", "carol"]


def test_user_without_images_cannot_verify(client) -> None:
    image_id = enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH))).json()["enrolled"][0]["image_id"]
    client.delete(f"/users/bush/images/{image_id}")
    _assert_error(verify(client, "bush", lfw_bytes(*BUSH)), 409, "no_enrolled_images")


# ------------------------------------------------------------------------- transactions, concurrency


def test_failed_commit_leaves_no_orphan_files_or_rows(client, monkeypatch) -> None:
    from sqlalchemy.orm import Session

    store = client.app.state.store
    assert enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH))).status_code == 201
    before_files, before_rows = store.files(), [r.id for r in _rows(client)]

    def broken_commit(self):
        raise RuntimeError("injected: database went away at commit")

    monkeypatch.setattr(Session, "commit", broken_commit)
    new_user = enroll(client, "powell", ("p.jpg", lfw_bytes(*POWELL)))
    existing_user = enroll(client, "bush", ("b.jpg", lfw_bytes("George_W_Bush", 2)))
    monkeypatch.undo()
    for response in (new_user, existing_user):
        _assert_error(response, 500, "internal_error")
    assert store.files() == before_files  # no temp files, no new files
    assert [r.id for r in _rows(client)] == before_rows and _users(client) == ["bush"]


def test_failed_photo_write_leaves_no_rows_or_files(client, monkeypatch) -> None:
    from service.storage.photos import ImageStore

    real_write = ImageStore.write_photo
    calls = []

    def write_then_fail(self, *args):
        calls.append(real_write(self, *args))  # the first photo lands, the second write fails
        if len(calls) == 2:
            raise OSError("injected: disk full")
        return calls[-1]

    monkeypatch.setattr(ImageStore, "write_photo", write_then_fail)
    photos = [("a.jpg", lfw_bytes(*BUSH)), ("b.jpg", lfw_bytes("George_W_Bush", 2))]
    _assert_error(enroll(client, "bush", *photos), 500, "internal_error")
    monkeypatch.undo()
    assert _rows(client) == [] and client.app.state.store.files() == []


def test_re_enrolling_restores_a_file_lost_after_commit(client) -> None:
    """A row whose file was removed by hand gets it back when the same photo is enrolled again."""
    photo = lfw_bytes(*BUSH)
    enroll(client, "bush", ("a.jpg", photo))
    [row] = _rows(client)
    store = client.app.state.store
    store.delete(row.path)
    assert enroll(client, "bush", ("a.jpg", photo)).json()["enrolled"][0]["image_id"] == row.id
    assert store.read_photo(row.path, row.user_pk, row.sha256) == photo and len(_rows(client)) == 1


def test_concurrent_enrolment_of_the_same_photo_is_idempotent(client) -> None:
    photo = lfw_bytes(*BUSH)
    results: list[object] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        response = enroll(client, "racer", ("a.jpg", photo))
        results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [status for status, _ in results]
    assert statuses == [201] * 4, results
    ids = {body["enrolled"][0]["image_id"] for _, body in results}
    assert len(ids) == 1 and len(_rows(client)) == 1 and len(client.app.state.store.files()) == 1


def test_concurrent_first_enrolments_of_one_user_with_different_photos(client) -> None:
    """Racing requests all create the same new user: the unique user_id decides, losers retry."""
    photos = [lfw_bytes("George_W_Bush", n) for n in (1, 2, 3)]
    statuses: list[int] = []
    barrier = threading.Barrier(len(photos))

    def worker(photo: bytes) -> None:
        barrier.wait()
        statuses.append(enroll(client, "newcomer", ("p.jpg", photo)).status_code)

    threads = [threading.Thread(target=worker, args=(p,)) for p in photos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 3
    assert _users(client) == ["newcomer"] and len(_rows(client)) == 3
    assert len(client.app.state.store.files()) == 3


def test_concurrent_verifies_agree(client, settings) -> None:
    # The tiny test model refuses even Bush's own photo, so every verify here is a failure: this test
    # is about concurrent scores, not the lockout (tests/service/test_security_lockout.py).
    settings.lockout_max_failures = 1000
    enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH)), ("b.jpg", lfw_bytes("George_W_Bush", 2)))
    probes = [lfw_bytes(*BUSH), lfw_bytes(*BLAIR)] * 4
    expected = [verify(client, "bush", p).json()["best_similarity"] for p in probes[:2]]
    results: dict[int, float | str] = {}

    def worker(i: int) -> None:
        # Admission control sheds what does not fit (503 overloaded); a client retries those.
        for _ in range(50):
            response = verify(client, "bush", probes[i])
            if response.status_code != 503:
                break
            assert response.json()["reason"] == "overloaded" and "retry-after" in response.headers
            time.sleep(0.1)
        body = response.json()
        ok = response.status_code == 200
        results[i] = body["best_similarity"] if ok else f"{response.status_code} {body}"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(probes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(len(probes)))  # every worker got an answer with a score
    for i, value in results.items():
        assert value == pytest.approx(expected[i % 2], abs=1e-5)


# ------------------------------------------------------------------------------- health and docs


def test_health_ready_and_docs(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready == {"status": "ready", "model_version": "tiny-test-1", "database": "ok"}
    # /docs and /openapi.json are off by default (see tests/service/test_security_web.py); the
    # schema the app would serve still documents every field.
    assert client.get("/docs").status_code == 404
    spec = client.app.openapi()
    verify_props = spec["components"]["schemas"]["VerifyOut"]["properties"]
    for field in ("verified", "votes", "vote_ratio", "best_similarity", "elapsed_ms"):
        assert "description" in verify_props[field]
    assert {"/enroll", "/verify", "/users", "/users/{user_id}", "/users/{user_id}/images/{image_id}",
            "/health", "/ready"} <= set(spec["paths"])
    assert {"404", "409", "413", "422"} <= set(spec["paths"]["/verify"]["post"]["responses"])


def test_ready_is_503_when_the_database_is_unreachable(client) -> None:
    from service.storage.database import create_db_engine

    good = client.app.state.db_engine
    client.app.state.db_engine = create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        response = client.get("/ready")
    finally:
        client.app.state.db_engine.dispose()
        client.app.state.db_engine = good
    assert response.status_code == 503 and response.json()["status"] == "not_ready"


def test_too_many_files_in_one_enrolment_is_413(client) -> None:
    client.app.state.settings.max_images_per_enroll = 2
    photo = lfw_bytes(*BUSH)
    response = enroll(client, "bush", *[(f"{i}.jpg", photo) for i in range(3)])
    _assert_error(response, 413, "too_many_files")
    assert _users(client) == []


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_memory_stays_flat_over_many_verifies(client) -> None:
    """Hundreds of verifies after a warm-up must not grow the process (no per-request caches)."""
    from service.security.ratelimit import RateLimiter

    # Hundreds of failed verifies of one user: the lockout and the per-key rate limit would (rightly)
    # stop them; this test is about memory, so both are lifted here.
    client.app.state.settings.lockout_max_failures = 10**6
    client.app.state.rate_limiter = RateLimiter(0)
    enroll(client, "bush", ("a.jpg", lfw_bytes(*BUSH)), ("b.jpg", lfw_bytes("George_W_Bush", 2)))
    probes = [lfw_bytes(*BUSH), lfw_bytes(*BLAIR), images.blank()]
    for i in range(60):
        verify(client, "bush", probes[i % 3])
    before = _rss_bytes()
    for i in range(300):
        assert verify(client, "bush", probes[i % 3]).status_code in (200, 422)
    growth = _rss_bytes() - before
    assert growth < 40 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB over 300 verifies"
