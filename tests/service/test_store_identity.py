"""Issue 18 item 1: the photo store knows whose it is, and nothing at start-up deletes data.

A second replica on the same database with an empty data directory (volume not mounted, wrong
DATA_DIR) used to run the start-up repair, find every row's photo "missing" and drop them all (6
rows -> 0); a replica pointed at another database's store deleted that store's files as orphans.
Now the store carries an identity marker tied to its database: such a replica is not ready (503
with a reason), data routes refuse, and no row or file is touched. The repair needs
`store check --repair --yes` and refuses when many rows lack their files.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from service_testdata import lfw_bytes
from sqlalchemy import func, select

from service.app import create_app
from service.cli.main import main as cli_main
from service.storage.tables import Image

pytestmark = pytest.mark.lfw

MARKER_NAME = ".faceverify-store-id"  # service.storage.identity.MARKER_NAME
PHOTOS = [("George_W_Bush", n) for n in (1, 2, 3)]


def _files(photos: list[tuple[str, int]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{p}_{n}.jpg", lfw_bytes(p, n), "image/jpeg")) for p, n in photos]


def _client(settings, face_engine, key: str | None = None) -> TestClient:
    client = TestClient(create_app(settings, face_engine=face_engine), raise_server_exceptions=False)
    if key:
        client.headers["X-API-Key"] = key
    return client


def _image_rows(client: TestClient) -> int:
    with client.app.state.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Image)) or 0)


def _store_files(data_dir: Path) -> set[Path]:
    return {p for p in (data_dir / "images").rglob("*") if p.is_file()}


def _enrolled(settings, face_engine) -> tuple[str, set[Path]]:
    """User `bush` (3 photos) through replica A; its admin key and photo files."""
    with _client(settings, face_engine) as a:
        key = settings.admin_key_file.read_text().strip()
        a.headers["X-API-Key"] = key
        answer = a.post("/enroll", data={"user_id": "bush"}, files=_files(PHOTOS))
        assert answer.status_code == 201 and len(answer.json()["enrolled"]) == 3, answer.text
    return key, _store_files(settings.data_dir)


def _assert_all_there(settings, face_engine, key: str, files: set[Path]) -> None:
    """Replica A still has every row and file, and compares a probe with all of them."""
    assert _store_files(settings.data_dir) >= files
    with _client(settings, face_engine, key) as a:
        assert a.get("/ready").status_code == 200
        assert _image_rows(a) == 3
        probe = {"image": ("p.jpg", lfw_bytes(*PHOTOS[0]), "image/jpeg")}
        answer = a.post("/verify", data={"user_id": "bush"}, files=probe)
        # The tiny test model votes only for the very same photo: 1 of the 3 stored rows.
        assert answer.status_code == 200, answer.text
        assert (answer.json()["votes"], answer.json()["comparisons"]) == (1, 3), answer.text


def test_a_replica_with_an_empty_data_dir_is_not_ready_and_drops_nothing(
    settings, face_engine, tmp_path: Path
) -> None:
    key_b64 = base64.b64encode(secrets.token_bytes(32)).decode()
    settings = settings.model_copy(
        update={"encryption_key": SecretStr(key_b64)}
    )  # B shares the key, not the store
    key, files = _enrolled(settings, face_engine)

    empty = settings.model_copy(update={"data_dir": tmp_path / "unmounted"})
    with _client(empty, face_engine, key) as b:
        ready = b.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["reason"] == "store_unavailable" and "mounted" in ready.json()["storage"]
        assert _image_rows(b) == 3  # the start-up check dropped nothing
        probe = {"image": ("p.jpg", lfw_bytes(*PHOTOS[0]), "image/jpeg")}
        refused = b.post("/verify", data={"user_id": "bush"}, files=probe)
        assert (refused.status_code, refused.json()["reason"]) == (503, "store_unavailable"), refused.text
        assert int(refused.headers["Retry-After"]) > 0
        enrol = b.post("/enroll", data={"user_id": "other"}, files=_files([("Colin_Powell", 1)]))
        assert (enrol.status_code, enrol.json()["reason"]) == (503, "store_unavailable")
    assert not _store_files(empty.data_dir)  # nothing written into the wrong store either
    _assert_all_there(settings, face_engine, key, files)


def test_a_replica_without_data_dir_or_key_file_makes_no_new_key_and_drops_nothing(
    settings, face_engine, tmp_path: Path
) -> None:
    """The whole volume missing: no key file either. No new key is created (the rows are sealed
    with the old one), the replica is not ready and names the missing key file."""
    key, files = _enrolled(settings, face_engine)
    empty = settings.model_copy(update={"data_dir": tmp_path / "unmounted"})
    with _client(empty, face_engine, key) as b:
        ready = b.get("/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "encryption_key_unavailable"
        assert "encryption-keys.json" in ready.json()["storage"]
        assert _image_rows(b) == 3
    assert not (empty.data_dir / "encryption-keys.json").exists()
    _assert_all_there(settings, face_engine, key, files)


def test_another_databases_store_is_refused_and_its_files_kept(settings, face_engine, tmp_path: Path) -> None:
    key, files = _enrolled(settings, face_engine)
    other_db = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'other.db'}"})
    with _client(other_db, face_engine) as b:
        ready = b.get("/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "store_unavailable"
        assert "another database" in ready.json()["storage"]
    assert _store_files(settings.data_dir) >= files  # not deleted as "files without rows"
    _assert_all_there(settings, face_engine, key, files)


def test_start_up_only_reports_and_the_cli_repairs_only_when_told_and_plausible(
    settings, face_engine, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    key, files = _enrolled(settings, face_engine)
    photo = sorted(p for p in files if p.name != MARKER_NAME)[0]
    photo.unlink()  # one of three rows loses its file (a third: more than a crash would leave)
    orphan = photo.with_name("f" * 64)
    orphan.write_bytes(b"left by a crash")
    with _client(settings, face_engine, key) as a:
        assert a.get("/ready").status_code == 200
        assert _image_rows(a) == 3 and orphan.exists()  # reported, not repaired
    assert "store check found" in caplog.text

    monkeypatch.setenv("FACEVERIFY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FACEVERIFY_DATABASE_URL", settings.database_url)
    capsys.readouterr()
    assert cli_main(["store", "check", "--repair"]) == 1  # no --yes: a dry run
    assert "add --yes" in capsys.readouterr().err and orphan.exists()
    assert cli_main(["store", "check", "--repair", "--yes"]) == 2  # 1 of 3 rows > 10 %
    assert "refusing to repair" in capsys.readouterr().err and orphan.exists()
    assert cli_main(["store", "check", "--repair", "--yes", "--max-missing-share", "0.5"]) == 0
    assert not orphan.exists()
    with _client(settings, face_engine, key) as a:
        assert _image_rows(a) == 2


def test_replicas_starting_together_on_a_new_database_agree_on_one_identity(backend, tmp_path: Path) -> None:
    """Four replicas bind one new database to one shared store at the same moment: all are ready
    (none takes the marker a sibling just wrote for another database's)."""
    import threading

    from service.runtime.config import Settings, normalise_database_url
    from service.storage.database import create_db_engine, make_session_factory, upgrade_to_head
    from service.storage.identity import StoreGuard
    from service.storage.setup import open_storage

    settings = Settings(_env_file=None, data_dir=tmp_path / "shared", database_url=backend.url)
    engine = create_db_engine(normalise_database_url(backend.url), settings)
    try:
        upgrade_to_head(engine)
        problems: list[str | None] = []
        guards: list[StoreGuard] = []

        def start() -> None:
            _keyring, store = open_storage(settings, engine)
            guard = StoreGuard(store)
            problems.append(guard.establish(make_session_factory(engine)))
            guards.append(guard)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert problems == [None] * 4
        assert len({guard.expected for guard in guards}) == 1 and guards[0].expected is not None
        assert (settings.data_dir / "images" / MARKER_NAME).read_text().strip() == guards[0].expected
    finally:
        engine.dispose()


def test_embeddings_only_replicas_each_with_an_empty_store_are_ready(
    settings, face_engine, tmp_path: Path
) -> None:
    """STORE_PHOTOS=false keeps no photo: each replica may have a store of its own (an emptyDir)."""
    key_b64 = SecretStr(base64.b64encode(secrets.token_bytes(32)).decode())
    first = settings.model_copy(update={"encryption_key": key_b64, "store_photos": False})
    with _client(first, face_engine) as a:
        a.headers["X-API-Key"] = first.admin_key_file.read_text().strip()
        assert a.post("/enroll", data={"user_id": "bush"}, files=_files(PHOTOS[:1])).status_code == 201
        key = first.admin_key_file.read_text().strip()
    second = first.model_copy(update={"data_dir": tmp_path / "empty-dir"})
    with _client(second, face_engine, key) as b:
        assert b.get("/ready").status_code == 200
        probe = {"image": ("p.jpg", lfw_bytes(*PHOTOS[0]), "image/jpeg")}
        assert b.post("/verify", data={"user_id": "bush"}, files=probe).json()["votes"] == 1
