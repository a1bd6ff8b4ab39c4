"""kill -9 during an enrolment or a delete, and enrolments racing deletes, on live `faceverify serve`
processes (issue 8). After every crash the service is restarted and the store and the database must
agree: every row has its file (which decrypts to the photo the row names), every file has its row,
no temp file is left, and the enrolment is either all there or not there at all.

The crash is injected by service.crashpoints (os._exit at a named point, armed through
FACEVERIFY_TEST_CRASH_AT=@file, so one test moves the point between restarts). Runs on SQLite and on
a throwaway PostgreSQL database; uses the tiny test model (fast start-up).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.runtime.config import Settings, normalise_database_url
from service.runtime.crashpoints import DELETE_POINTS, ENROL_POINTS, ENV
from service.storage.database import create_db_engine, make_session_factory
from service.storage.photos import TEMP_PREFIX
from service.storage.setup import open_storage
from service.storage.tables import Image, User

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/live_server.py
from live_server import LiveService, start_service, stop_service, wait_ready  # noqa: E402

# Eight (or two) service starts; pyproject.toml's 600 s per-test timeout is too tight on a loaded box.
pytestmark = [pytest.mark.lfw, pytest.mark.slow, pytest.mark.timeout(1800)]

VICTIM_PHOTOS = [("George_W_Bush", n) for n in (1, 2, 3)]


@dataclass
class Deployment:
    tmp: Path
    env: dict[str, str]
    settings: Settings
    crash_file: Path


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, tiny_model_dir: Path) -> Deployment:
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'faceverify.db'}"
    else:
        url = request.getfixturevalue("postgres_databases")()
    crash_file = tmp_path / "crash-at"
    crash_file.write_text("")
    env = {
        "FACEVERIFY_DATABASE_URL": url,
        "FACEVERIFY_DATA_DIR": str(data_dir),
        "FACEVERIFY_MODEL_DIR": str(tiny_model_dir),
        ENV: f"@{crash_file}",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    settings = Settings(data_dir=data_dir, database_url=url, model_dir=tiny_model_dir)
    return Deployment(tmp_path, env, settings, crash_file)


@pytest.fixture
def services() -> Iterator[list[LiveService]]:
    """Every service a test starts, stopped at the end whatever happens."""
    started: list[LiveService] = []
    yield started
    for service in started:
        stop_service(service)


# More than live_server's default: on a shared 2-core box under heavy load one start took > 240 s.
READY_S = 600.0


def _start(deployment: Deployment, services: list[LiveService], name: str) -> LiveService:
    service = wait_ready(start_service(deployment.tmp, deployment.env, name), time.monotonic() + READY_S)
    services.append(service)
    return service


def _files(photos: list[tuple[str, int]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{p}_{n}.jpg", lfw_bytes(p, n), "image/jpeg")) for p, n in photos]


def consistency(settings: Settings) -> dict[str, set[str]]:
    """Assert that store and database agree; returns user_id -> sha256 of their images."""
    _keyring, store = open_storage(settings)
    engine = create_db_engine(normalise_database_url(settings.sqlalchemy_url))
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(select(Image, User.user_id).join(User)).all()
            users = list(session.scalars(select(User.user_id)))
        images: dict[str, set[str]] = {u: set() for u in users}
        expected_files = set()
        for image, user_id in rows:
            images[user_id].add(image.sha256)
            assert image.photo_stored
            photo = store.read_photo(image.path, image.user_pk, image.sha256)  # exists and authenticates
            assert hashlib.sha256(photo).hexdigest() == image.sha256
            image.vector(store.keyring)  # the embedding authenticates too
            expected_files.add(store.absolute(image.path))
        on_disk = set(store.files())
        assert not [p for p in on_disk if p.name.startswith(TEMP_PREFIX)], "temp files left"
        assert on_disk == expected_files, f"files without rows: {on_disk - expected_files}"
        return images
    finally:
        engine.dispose()


def _debris(settings: Settings) -> list[Path]:
    """Files a crash left that the start-up repair must remove (checked before restarting)."""
    _keyring, store = open_storage(settings)
    engine = create_db_engine(normalise_database_url(settings.sqlalchemy_url))
    try:
        with make_session_factory(engine)() as session:
            paths = {store.absolute(p) for p in session.scalars(select(Image.path))}
    finally:
        engine.dispose()
    return [p for p in store.files() if p not in paths]


def _crash_with(service: LiveService, request: httpx.Request) -> None:
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=120) as http:
        http.send(request)
    assert service.process.wait(timeout=60) == 137, service.log.read_text()[-3000:]


def test_kill_at_every_point_of_an_enrolment_and_a_delete_leaves_store_and_db_in_agreement(
    deployment: Deployment, services: list[LiveService]
) -> None:
    service = _start(deployment, services, "api-0")
    base = httpx.post(
        f"{service.url}/enroll", data={"user_id": "base"}, files=_files([("Colin_Powell", 1)]), timeout=120,
        headers=service.headers,
    )  # fmt: skip
    assert base.status_code == 201, base.text
    victim_shas = {hashlib.sha256(lfw_bytes(p, n)).hexdigest() for p, n in VICTIM_PHOTOS}
    debris_seen: dict[str, int] = {}

    for index, point in enumerate(ENROL_POINTS, start=1):
        deployment.crash_file.write_text(point)
        request = httpx.Request(
            "POST", f"{service.url}/enroll", data={"user_id": f"victim-{index}"}, files=_files(VICTIM_PHOTOS),
            headers=service.headers,
        )  # fmt: skip
        _crash_with(service, request)
        debris_seen[point] = len(_debris(deployment.settings))
        deployment.crash_file.write_text("")
        service = _start(deployment, services, f"api-{index}")  # start-up repair runs before /ready
        images = consistency(deployment.settings)
        if point == "after_commit":
            assert images.get(f"victim-{index}") == victim_shas  # the whole enrolment
            listed = httpx.get(f"{service.url}/users/victim-{index}", headers=service.headers).json()
            listed = listed["images"]
            assert len(listed) == 3
        else:
            assert f"victim-{index}" not in images, point  # none of it
        assert images["base"] and len(images["base"]) == 1
        if debris_seen[point]:
            assert "store repair: removed" in service.log.read_text(), point

    # The crashes really left debris for the repair to remove (else this test proves little).
    assert debris_seen["after_temp_write"] >= 1  # a temp file
    assert debris_seen["before_commit"] == 3  # three published files whose rows never committed

    # A delete killed after its commit: rows gone, files orphaned until the restart removes them.
    [point] = DELETE_POINTS
    deployment.crash_file.write_text(point)
    _crash_with(service, httpx.Request("DELETE", f"{service.url}/users/base", headers=service.headers))
    assert len(_debris(deployment.settings)) == 1
    deployment.crash_file.write_text("")
    service = _start(deployment, services, "api-after-delete")
    images = consistency(deployment.settings)
    assert "base" not in images and images["victim-6"] == victim_shas
    assert httpx.get(f"{service.url}/users/base", headers=service.headers).status_code == 404


def test_enrolments_racing_deletes_of_the_same_user_across_two_processes(
    deployment: Deployment, services: list[LiveService]
) -> None:
    """Issue 8: ~5% of enrols answered 500 when racing a DELETE, some acknowledged ids that were never
    stored, and one id was given to two photos. Enrols go to one process, deletes to the other.
    Free-running, this rarely hits the window the per-user lock closes (it passes without the lock);
    test_service_enrol_delete_race.py holds both requests at the exact points and fails without it."""
    first = start_service(deployment.tmp, deployment.env, "racer-a")
    second = start_service(deployment.tmp, deployment.env, "racer-b")
    services += [first, second]
    deadline = time.monotonic() + READY_S
    wait_ready(first, deadline)
    wait_ready(second, deadline)
    photos = [("Colin_Powell", 1), ("Tony_Blair", 2)]  # one clear face each (Tony_Blair_0001 has two)
    shas = [hashlib.sha256(lfw_bytes(p, n)).hexdigest() for p, n in photos]
    rounds = 12
    answers: list[tuple[str, int, dict]] = []
    errors: list[str] = []  # an exception in a loop's thread would only be a warning
    lock = threading.Lock()
    enrolling = threading.Event()
    enrolling.set()

    def enrol_loop() -> None:
        try:
            with httpx.Client(timeout=120, headers=first.headers) as http:
                for _ in range(rounds):
                    r = http.post(f"{first.url}/enroll", data={"user_id": "racer"}, files=_files(photos))
                    with lock:
                        answers.append(("enrol", r.status_code, r.json()))
        except Exception as exc:  # reported below
            errors.append(f"enrol loop: {exc!r}")
        finally:
            enrolling.clear()

    def delete_loop() -> None:
        """Deletes for as long as the enrolments run (at least `rounds`), so that they interleave."""
        try:
            with httpx.Client(timeout=120, headers=second.headers) as http:
                sent = 0
                while enrolling.is_set() or sent < rounds:
                    r = http.delete(f"{second.url}/users/racer")
                    sent += 1
                    with lock:
                        answers.append(("delete", r.status_code, r.json()))
                    time.sleep(0.02)
        except Exception as exc:  # reported below
            errors.append(f"delete loop: {exc!r}")

    threads = [threading.Thread(target=enrol_loop), threading.Thread(target=delete_loop)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors
    assert all(status < 500 for _, status, _ in answers), answers
    enrols = [body for kind, status, body in answers if kind == "enrol"]
    assert len(enrols) == rounds
    assert all(status == 201 for kind, status, _ in answers if kind == "enrol"), answers
    deletes = [(status, body) for kind, status, body in answers if kind == "delete"]
    assert len(deletes) >= rounds and {status for status, _ in deletes} <= {200, 404}, deletes
    # The race happened: before the last enrolment was answered, deletes had removed enrolled images.
    last_enrol = max(i for i, (kind, _, _) in enumerate(answers) if kind == "enrol")
    assert any(
        kind == "delete" and status == 200 and body["deleted_images"] >= 1
        for kind, status, body in answers[:last_enrol]
    ), answers
    sha_of_id: dict[int, str] = {}
    for body in enrols:
        entries = body["enrolled"]
        assert [e["sha256"] for e in entries] == shas
        assert len({e["image_id"] for e in entries}) == 2  # never one id for two photos
        for entry in entries:
            assert sha_of_id.setdefault(entry["image_id"], entry["sha256"]) == entry["sha256"]
    # An acknowledged enrolment is stored: re-enrolling right after the race finds the same rows.
    final = httpx.post(
        f"{first.url}/enroll", data={"user_id": "racer"}, files=_files(photos), timeout=60,
        headers=first.headers,
    )  # fmt: skip
    listed = httpx.get(f"{second.url}/users/racer", headers=second.headers).json()["images"]
    assert sorted(i["image_id"] for i in listed) == sorted(e["image_id"] for e in final.json()["enrolled"])
    assert consistency(deployment.settings)["racer"] == set(shas)
