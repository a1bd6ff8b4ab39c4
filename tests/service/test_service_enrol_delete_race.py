"""Enrol racing DELETE of the same user, interleaved deterministically (issue 8), SQLite and PostgreSQL.

The defect: an enrolment answered 201 with image ids that no longer existed (or whose photo file
was gone), or 500. The interleaving that shows it: a DELETE of the user has committed and is about
to sweep the user's folder (it removes every file without a committed row) while an enrolment of
the same user id, inside its own transaction, has written its photo files but not yet committed
their rows. Without the per-user lock the sweep takes the enrolment's files, and the enrolment
then commits rows without files and acknowledges them. With the lock the sweep waits for the
enrolment's commit and keeps its files.

Both requests run for real (the app behind a loopback socket, real SQLite/PostgreSQL, LFW photos,
the tiny model); the interleaving comes from a crash-point hook (`service.crashpoints`) that holds
each request at a named point until the test lets it go. A second test runs the same race with the
lock made a no-op and asserts that the checks catch the loss, so the first test stays able to fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import httpx
import pytest
from conftest import LiveApp
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.enrolment import service as enrolment
from service.runtime.crashpoints import installed_hook
from service.storage import recovery
from service.storage.photos import TEMP_PREFIX
from service.storage.tables import Image, User
from service.users import service as user_admin

pytestmark = pytest.mark.lfw

FIRST = [("Colin_Powell", 1)]  # enrolled before the race: what the DELETE removes
RACED = [("Tony_Blair", 2), ("George_W_Bush", 1)]  # the enrolment racing the DELETE
HOLD_S = 30.0  # the longest a paused request waits for the test (a safety net, never reached)
SWEEP_WAIT_S = 0.5  # how long the DELETE's sweep is given to run before the enrolment goes on


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """SQLite's busy wait long enough for a sweep that waits for the held enrolment's commit."""
    return settings.model_copy(update={"sqlite_busy_timeout_s": 10.0})


class Holds:
    """A crash-point hook that stops a request at each chosen point (once) until released."""

    def __init__(self, *points: str):
        self._reached = {p: threading.Event() for p in points}
        self._release = {p: threading.Event() for p in points}
        self._pending = set(points)
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            if name not in self._pending:
                return
            self._pending.discard(name)
        self._reached[name].set()
        if not self._release[name].wait(HOLD_S):
            raise RuntimeError(f"test never released the request held at {name}")

    def reached(self, name: str) -> None:
        assert self._reached[name].wait(HOLD_S), f"no request reached {name}"

    def release(self, name: str) -> None:
        self._release[name].set()

    def release_all(self) -> None:
        for event in self._release.values():
            event.set()


def _files(photos: list[tuple[str, int]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{p}_{n}.jpg", lfw_bytes(p, n), "image/jpeg")) for p, n in photos]


def _call(live: LiveApp, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request on its own connection (each racing request has its own client)."""
    with httpx.Client(base_url=live.url, headers=live.headers, timeout=HOLD_S + 30) as http:
        return http.request(method, path, **kwargs)  # type: ignore[arg-type]


@dataclass
class Race:
    deleted: httpx.Response
    enrolled: httpx.Response


def _race(live: LiveApp, enrol_hold: str) -> Race:
    """DELETE held right after its commit, an enrolment of the same user held at `enrol_hold`
    (inside its locked transaction); then the DELETE's folder sweep runs, then the enrolment."""
    first = _call(live, "POST", "/enroll", data={"user_id": "racer"}, files=_files(FIRST))
    assert first.status_code == 201, first.text
    holds = Holds("delete_after_commit", enrol_hold)
    with installed_hook(holds), ThreadPoolExecutor(2) as pool:
        try:
            deleting: Future[httpx.Response] = pool.submit(_call, live, "DELETE", "/users/racer")
            holds.reached("delete_after_commit")
            enrolling = pool.submit(
                _call, live, "POST", "/enroll", data={"user_id": "racer"}, files=_files(RACED)
            )
            holds.reached(enrol_hold)
            holds.release("delete_after_commit")
            with contextlib.suppress(FutureTimeout):  # with the lock, the sweep waits for the enrolment
                deleting.result(timeout=SWEEP_WAIT_S)
            holds.release(enrol_hold)
            return Race(deleting.result(timeout=HOLD_S), enrolling.result(timeout=HOLD_S))
        finally:
            holds.release_all()


def _acknowledged(race: Race) -> dict[int, str]:
    """image id -> sha256 of what the enrolment acknowledged (ids distinct, photos as sent)."""
    entries = race.enrolled.json()["enrolled"]
    acknowledged = {int(e["image_id"]): str(e["sha256"]) for e in entries}
    assert len(acknowledged) == len(entries) == len(RACED), entries  # never one id for two photos
    assert sorted(acknowledged.values()) == sorted(hashlib.sha256(lfw_bytes(*p)).hexdigest() for p in RACED)
    return acknowledged


def _missing_files(live: LiveApp) -> list[int]:
    """Ids of the user's rows whose photo file is gone; asserts the rest of store/db agreement."""
    store = live.app.state.store
    with live.app.state.session_factory() as session:
        rows = list(session.scalars(select(Image).join(User).where(User.user_id == "racer")))
    missing = []
    for row in rows:
        if not store.exists(row.path):
            missing.append(row.id)
            continue
        assert hashlib.sha256(store.read_photo(row.path, row.user_pk, row.sha256)).hexdigest() == row.sha256
        row.vector(store.keyring)
    on_disk = set(store.files())
    assert not [p for p in on_disk if p.name.startswith(TEMP_PREFIX)], "temp files left"
    assert on_disk == {store.absolute(r.path) for r in rows if r.id not in missing}, "files without rows"
    return missing


@pytest.mark.parametrize("enrol_hold", ["after_first_publish", "before_commit"])
def test_an_enrolment_held_in_its_transaction_keeps_its_photos_when_a_delete_sweeps_the_folder(
    live_app: LiveApp, enrol_hold: str
) -> None:
    race = _race(live_app, enrol_hold)
    assert race.deleted.status_code == 200, race.deleted.text
    assert race.deleted.json()["deleted_images"] == len(FIRST)  # the DELETE came first
    assert race.enrolled.status_code == 201, race.enrolled.text
    acknowledged = _acknowledged(race)
    listed = _call(live_app, "GET", "/users/racer")
    assert listed.status_code == 200, listed.text
    assert {i["image_id"]: i["sha256"] for i in listed.json()["images"]} == acknowledged
    lost = _missing_files(live_app)
    assert lost == [], f"acknowledged images {lost} lost their photo files"  # the rest decrypt
    # And the acknowledged enrolment is what verify compares with: each raced photo is one of the
    # two comparisons and votes for itself (the tiny model's sharp head: only the same photo votes).
    for person, number in RACED:
        probe = {"image": ("p.jpg", lfw_bytes(person, number), "image/jpeg")}
        verify = _call(live_app, "POST", "/verify", data={"user_id": "racer"}, files=probe)
        assert verify.status_code == 200, verify.text
        assert (verify.json()["votes"], verify.json()["comparisons"]) == (1, len(RACED)), verify.text


NO_LOCK: Callable[..., None] = lambda *_args, **_kwargs: None  # noqa: E731


def test_without_the_user_lock_the_same_race_acknowledges_photos_that_are_gone(
    live_app: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above is real: with the per-user lock a no-op, the sweep removes the held
    enrolment's files and the enrolment still answers 201 with their ids."""
    for module in (enrolment, user_admin, recovery):
        monkeypatch.setattr(module, "lock_user_dir", NO_LOCK)
    race = _race(live_app, "before_commit")
    assert race.enrolled.status_code == 201, race.enrolled.text
    acknowledged = _acknowledged(race)
    missing = _missing_files(live_app)
    assert missing and set(missing) <= set(acknowledged)
