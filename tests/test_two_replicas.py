"""Two `faceverify serve` processes share one PostgreSQL database and one image directory.

This is the proof behind docker-compose's `--scale api=N`: nothing a request needs lives only in the
memory of the process that served an earlier request. The schema is migrated once beforehand (as the
compose `migrate` service does) and both replicas start with migrate-on-startup off; then a user is
enrolled through replica A and verified through replica B, images written by one are listed by the
other, and a deletion through one is a 404 through the other. Security state is shared the same way:
failed verifies through both replicas lock the user on both, and a revoked key fails on both at once.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import (
    FACEVERIFY,
    LiveService,
    post_like_a_client,
    release_model_dir,
    start_service,
    stop_service,
    wait_ready,
)

REPO = Path(__file__).resolve().parents[1]
FRAMES = REPO.parent / "shared" / "data" / "frames" / "short_hamilton_clip" / "frames"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL, dropped at the end whatever happens."""
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}".splitlines()[0])
    name = f"faceverify_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def replicas(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveService, LiveService, Path]]:
    if not FRAMES.is_dir():
        pytest.fail(f"real frames not found at {FRAMES} (../shared/data relative to the repo)")
    tmp = tmp_path_factory.mktemp("replicas")
    data_dir = tmp / "shared-data"
    env = {
        **os.environ,
        "FACEVERIFY_DATABASE_URL": database_url,
        "FACEVERIFY_DATA_DIR": str(data_dir),
        "FACEVERIFY_MODEL_DIR": str(release_model_dir()),
        "FACEVERIFY_MIGRATE_ON_STARTUP": "false",
        "FACEVERIFY_TF_THREADS": "1",
        # One request at a time per replica, a short queue: concurrent tests really meet 503
        # `overloaded` (as on a slow, busy CI box) and must behave like a client (issue 18 item 14).
        "FACEVERIFY_ADMISSION_MAX_ACTIVE": "1",
        "FACEVERIFY_ADMISSION_MAX_QUEUED": "1",
        "FACEVERIFY_ADMISSION_MAX_WAIT_S": "0.05",
    }
    migrate = subprocess.run(
        [str(FACEVERIFY), "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    first, second = start_service(tmp, env, "replica-a"), start_service(tmp, env, "replica-b")
    try:
        deadline = time.monotonic() + 240
        wait_ready(first, deadline)
        wait_ready(second, deadline)
        yield first, second, data_dir
    finally:
        stop_service(first)
        stop_service(second)


def upload(name: str) -> tuple[str, bytes, str]:
    return (name, (FRAMES / name).read_bytes(), "image/jpeg")


def stored_files(data_dir: Path) -> set[Path]:
    """Stored image files (not the database, the key files or the store marker of the first start)."""
    keys = {"admin-api-key", "encryption-keys.json", ".faceverify-store-id"}  # and the store's identity
    return {p for p in data_dir.rglob("*") if p.is_file() and p.suffix != ".db" and p.name not in keys}


def test_enrol_on_one_replica_verify_and_delete_on_the_other(
    replicas: tuple[LiveService, LiveService, Path],
) -> None:
    a, b, data_dir = replicas
    assert a.process.pid != b.process.pid and a.url != b.url

    enrolled = httpx.post(
        f"{a.url}/enroll",
        data={"user_id": "performer"},
        files=[("images", upload(f"frame_{n:04d}.jpg")) for n in (115, 120, 125, 130)],
        headers=a.headers,
        timeout=120,
    )
    assert enrolled.status_code == 201, enrolled.text
    assert len(enrolled.json()["enrolled"]) >= 3
    files_after_enrol = stored_files(data_dir)
    assert files_after_enrol, "replica A stored no image file in the shared data directory"

    # LiveService B never saw the enrolment request: it must find the user through the database alone.
    verified = httpx.post(
        f"{b.url}/verify",
        data={"user_id": "performer"},
        files={"image": upload("frame_0185.jpg")},
        headers=b.headers,
        timeout=120,
    )
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["verified"] is True and body["comparisons"] == len(enrolled.json()["enrolled"])

    stranger = httpx.post(
        f"{b.url}/verify",
        data={"user_id": "performer"},
        files={"image": upload("frame_0249.jpg")},
        headers=b.headers,
        timeout=120,
    )
    # frame_0249: the audience (several faces; verify takes the largest): answered, and refused.
    assert stranger.status_code == 200, stranger.text
    assert stranger.json()["verified"] is False and stranger.json()["faces_found"] >= 1, stranger.text

    # What A wrote, B lists (same image ids).
    listed = httpx.get(f"{b.url}/users/performer", headers=b.headers, timeout=30)
    assert listed.status_code == 200, listed.text
    ids_from_a = sorted(item["image_id"] for item in enrolled.json()["enrolled"])
    assert sorted(image["image_id"] for image in listed.json()["images"]) == ids_from_a

    # Deleting through B is seen by A at once, and the shared files are gone too.
    deleted = httpx.delete(f"{b.url}/users/performer", headers=b.headers, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted_images"] == len(ids_from_a)
    gone = httpx.post(
        f"{a.url}/verify",
        data={"user_id": "performer"},
        files={"image": upload("frame_0185.jpg")},
        headers=a.headers,
        timeout=120,
    )
    assert gone.status_code == 404 and gone.json()["reason"] == "unknown_user"
    assert httpx.get(f"{a.url}/users/performer", headers=a.headers, timeout=30).status_code == 404
    assert not (stored_files(data_dir) & files_after_enrol)


def test_both_replicas_enrol_concurrently_into_one_database(
    replicas: tuple[LiveService, LiveService, Path],
) -> None:
    """Simultaneous enrolments of two users through the two replicas both land, and each replica sees
    both users (no per-process cache of the user table)."""
    import concurrent.futures

    a, b, _ = replicas

    def enrol(replica: LiveService, user: str, frames: tuple[int, ...]) -> httpx.Response:
        return post_like_a_client(
            f"{replica.url}/enroll",
            data={"user_id": user},
            files=[("images", upload(f"frame_{n:04d}.jpg")) for n in frames],
            headers=replica.headers,
            timeout=120,
        )

    # Several candidate frames each: the detector may reject one of them (hand, second face).
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(enrol, (a, b), ("alpha", "beta"), ((115, 120, 125), (185, 190, 195))))
    assert [r.status_code for r in results] == [201, 201], [r.text for r in results]
    counts = {user: len(r.json()["enrolled"]) for user, r in zip(("alpha", "beta"), results, strict=True)}
    for replica in (a, b):
        users = httpx.get(f"{replica.url}/users", headers=replica.headers, timeout=30).json()
        assert {"alpha", "beta"} <= {u["user_id"] for u in users["users"]}
    for replica, user in ((a, "beta"), (b, "alpha")):  # each verifies the user the *other* enrolled
        probe = httpx.post(
            f"{replica.url}/verify",
            data={"user_id": user},
            files={"image": upload("frame_0180.jpg")},
            headers=replica.headers,
            timeout=120,
        )
        assert probe.status_code == 200 and probe.json()["comparisons"] == counts[user], probe.text


LFW = REPO.parent / "shared" / "data" / "lfw" / "images"


def test_failed_verifies_through_both_replicas_lock_the_user_on_both(
    replicas: tuple[LiveService, LiveService, Path],
) -> None:
    """Five failed verifies, sent concurrently through A and B, lock the user on both replicas (the
    counter is a locked database row); an unlock through one replica lifts it on the other."""
    import concurrent.futures

    stranger_photo = LFW / "George_W_Bush" / "George_W_Bush_0001.jpg"
    if not stranger_photo.is_file():
        pytest.fail(f"LFW not found at {LFW}")
    a, b, _ = replicas
    enrolled = httpx.post(
        f"{a.url}/enroll",
        data={"user_id": "lockme"},
        files=[("images", upload(f"frame_{n:04d}.jpg")) for n in (115, 120, 125)],
        headers=a.headers,
        timeout=120,
    )
    assert enrolled.status_code == 201, enrolled.text

    def attempt(replica: LiveService, photo: tuple[str, bytes, str]) -> httpx.Response:
        return post_like_a_client(
            f"{replica.url}/verify",
            data={"user_id": "lockme"},
            files={"image": photo},
            headers=replica.headers,
            timeout=120,
        )

    stranger = ("bush.jpg", stranger_photo.read_bytes(), "image/jpeg")
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        failures = list(pool.map(attempt, (a, b, a, b, a), [stranger] * 5))
    assert [(r.status_code, r.json()["verified"]) for r in failures] == [(200, False)] * 5
    for replica in (a, b):
        locked = attempt(replica, upload("frame_0185.jpg"))  # the right face, still refused
        assert (locked.status_code, locked.json()["reason"]) == (429, "locked_out"), locked.text
        assert int(locked.headers["Retry-After"]) > 0
    unlocked = httpx.post(f"{b.url}/users/lockme/unlock", headers=b.headers, timeout=30)
    assert unlocked.status_code == 200 and unlocked.json()["was_locked"] is True
    granted = attempt(a, upload("frame_0185.jpg"))
    assert granted.status_code == 200 and granted.json()["verified"] is True, granted.text


def test_a_revoked_key_is_refused_by_both_replicas_at_once(
    replicas: tuple[LiveService, LiveService, Path], database_url: str
) -> None:
    env = {**os.environ, "FACEVERIFY_DATABASE_URL": database_url}
    created = subprocess.run(
        [str(FACEVERIFY), "keys", "create", "--name", "ops", "--scopes", "manage"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = {"X-API-Key": created.stdout.strip().splitlines()[-1]}
    a, b, _ = replicas
    assert [httpx.get(f"{r.url}/users", headers=key, timeout=30).status_code for r in (a, b)] == [200, 200]
    revoked = subprocess.run(
        [str(FACEVERIFY), "keys", "revoke", "ops"], capture_output=True, text=True, env=env, timeout=120
    )
    assert revoked.returncode == 0, revoked.stderr
    for replica in (a, b):
        answer = httpx.get(f"{replica.url}/users", headers=key, timeout=30)
        assert (answer.status_code, answer.json()["reason"]) == (401, "invalid_api_key")
    audit = httpx.get(f"{a.url}/audit", params={"action": "key_revoke"}, headers=a.headers, timeout=30)
    assert audit.json()["entries"][0]["summary"] == {"name": "ops"}
