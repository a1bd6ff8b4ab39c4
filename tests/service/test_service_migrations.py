"""Settings, and Alembic migrations on SQLite and PostgreSQL (idempotent, concurrent, matching the models;
0005 rebuilding populated SQLite tables with AUTOINCREMENT, down and up, atomically)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from service_testdata import lfw_bytes
from sqlalchemy import Engine, delete, insert, inspect, select
from sqlalchemy.exc import OperationalError

from service.runtime.config import Settings, normalise_database_url
from service.storage.database import (
    alembic_config,
    create_db_engine,
    current_revision,
    head_revision,
    migration_transaction,
    upgrade_to_head,
)
from service.storage.tables import Base, Image, User


def test_plain_postgresql_urls_use_psycopg3() -> None:
    assert normalise_database_url("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert normalise_database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEVERIFY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FACEVERIFY_MAX_UPLOAD_BYTES", "1234")
    settings = Settings()
    assert settings.max_upload_bytes == 1234
    assert settings.sqlalchemy_url == f"sqlite:///{(tmp_path / 'faceverify.db').resolve()}"
    monkeypatch.setenv("FACEVERIFY_DATABASE_URL", "postgresql://u@h/d")
    assert Settings().sqlalchemy_url == "postgresql+psycopg://u@h/d"


def test_defaults_match_the_contract() -> None:
    settings = Settings(_env_file=None)
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert settings.max_pixels == 40_000_000
    assert settings.model_dir == Path("models/release")


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("postgres_databases")())


def test_migrations_reach_head_concurrently_idempotently_and_match_models(fresh_database_url: str) -> None:
    engine = create_db_engine(normalise_database_url(fresh_database_url))
    try:
        errors: list[BaseException] = []

        def upgrade() -> None:
            try:
                upgrade_to_head(engine)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        # Two "replicas" starting together, then a third start: all succeed, schema at head.
        threads = [threading.Thread(target=upgrade) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        upgrade_to_head(engine)
        assert errors == []
        assert current_revision(engine) == head_revision(engine) == "0005_ids_never_reused"
        assert {"users", "images", "alembic_version"} <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


# ------------------------------------------------------- 0005: SQLite ids never reused (AUTOINCREMENT)

HEAD = "0005_ids_never_reused"
NEVER_REUSED = {"users", "images", "api_keys", "liveness_challenges", "liveness_burst_hashes"}
SINGLE_ROW = {"audit_head"}  # its one row has the fixed id 1 (inserted by 0002, never deleted)
BOB = ("Colin_Powell", 6)
ALICE = [("George_W_Bush", 1), ("George_W_Bush", 2), ("George_W_Bush", 3)]  # the last one is deleted


def _sqlite_engine(tmp_path: Path) -> Engine:
    return create_db_engine(f"sqlite:///{tmp_path / 'faceverify.db'}")


def _migrate(engine: Engine, revision: str, direction: str = "upgrade") -> None:
    """Alembic to `revision`, in the transaction upgrade_to_head uses (on SQLite: atomic, FKs off)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection, migration_transaction(connection):
        cfg.attributes["connection"] = connection
        getattr(command, direction)(cfg, revision)


def _sql(engine: Engine, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction; its rows, if it returns any."""
    with engine.begin() as connection:
        result = connection.exec_driver_sql(statement)
        return [tuple(row) for row in result] if result.returns_rows else []


def _autoincrement_tables(engine: Engine) -> set[str]:
    rows = _sql(engine, "SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    return {name for name, sql in rows if "AUTOINCREMENT" in sql}


def _contents(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored value of every table (raw: blobs byte for byte), in key order."""
    names = set(inspect(engine).get_table_names()) - {"sqlite_sequence"}
    return {name: _sql(engine, f'SELECT * FROM "{name}" ORDER BY 1') for name in sorted(names)}


def _schema(engine: Engine) -> dict[str, tuple[Any, ...]]:
    """What a table rebuild must keep: columns, key, foreign keys, unique constraints, indexes."""
    inspector = inspect(engine)
    out: dict[str, tuple[Any, ...]] = {}
    for name in inspector.get_table_names():
        columns = [
            (c["name"], str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(name)
        ]
        fks = sorted(
            (f["name"], f["constrained_columns"], f["referred_table"], f["referred_columns"], f["options"])
            for f in inspector.get_foreign_keys(name)
        )
        uniques = sorted((u["name"], u["column_names"]) for u in inspector.get_unique_constraints(name))
        indexes = sorted((i["name"], i["column_names"], i["unique"]) for i in inspector.get_indexes(name))
        pk = inspector.get_pk_constraint(name)["constrained_columns"]
        out[name] = (columns, pk, fks, uniques, indexes)
    return out


def _sequence(engine: Engine, table: str) -> int:
    [(seq,)] = _sql(engine, f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'")
    return int(seq)


def _populate(engine: Engine) -> None:
    """Two users with images and liveness rows; the newest image (id 3) deleted: ids 1, 2 remain."""
    from service.storage.tables import LivenessBurstHash, LivenessChallenge

    now = dt.datetime.now(dt.UTC)
    image = {"path": "p", "size": 1, "box_x": 0, "box_y": 0, "box_w": 9, "box_h": 9, "embedding": b"\x01",
             "embedding_dim": 1, "model_version": "m", "created": now}  # fmt: skip
    users = [{"id": 1, "user_id": "a", "created": now}, {"id": 2, "user_id": "b", "created": now}]
    images = [{**image, "id": i, "user_pk": u, "sha256": f"s{i}"} for i, u in ((1, 1), (2, 2), (3, 1))]
    challenge = {"challenge_id": "c", "user_pk": 1, "steps": "turn_left", "created": now, "expires_at": now}
    burst = {"user_pk": 2, "sha256": "h", "chip_hash": -5, "created": now}
    with engine.begin() as connection:
        connection.execute(insert(User), users)
        connection.execute(insert(Image), images)
        connection.execute(delete(Image).where(Image.id == 3))
        connection.execute(insert(LivenessChallenge), [challenge])
        connection.execute(insert(LivenessBurstHash), [burst])


def test_head_makes_exactly_the_tables_the_models_mark_never_reuse_ids(tmp_path: Path) -> None:
    """The migration and the models agree (Alembic's compare does not look at AUTOINCREMENT), and no
    table whose key the database assigns is left out (a new table must opt in)."""
    engine = _sqlite_engine(tmp_path)
    try:
        upgrade_to_head(engine)
        tables = Base.metadata.tables.values()
        marked = {t.name for t in tables if t.dialect_options["sqlite"]["autoincrement"]}
        assigned = {t.name for t in tables if t.autoincrement_column is not None}
        assert _autoincrement_tables(engine) == marked == NEVER_REUSED == assigned - SINGLE_ROW
    finally:
        engine.dispose()


def test_0005_downgrades_and_upgrades_again_keeping_every_row_and_the_schema(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    try:
        _migrate(engine, "0004_liveness")
        _populate(engine)
        rows, schema = _contents(engine), _schema(engine)
        _migrate(engine, HEAD)
        assert _autoincrement_tables(engine) == NEVER_REUSED
        assert _contents(engine) == {**rows, "alembic_version": [(HEAD,)]} and _schema(engine) == schema
        assert _sequence(engine, "users") == 2 and _sequence(engine, "images") == 2  # largest kept id

        _migrate(engine, "0004_liveness", "downgrade")
        assert current_revision(engine) == "0004_liveness" and _autoincrement_tables(engine) == set()
        assert _contents(engine) == rows and _schema(engine) == schema
        upgrade_to_head(engine)
        assert _autoincrement_tables(engine) == NEVER_REUSED
        assert _sql(engine, "PRAGMA foreign_key_check") == []
    finally:
        engine.dispose()


def test_0005_refuses_to_run_with_foreign_key_enforcement_on(tmp_path: Path) -> None:
    """Rebuilding `users` with enforcement on would delete every image (DROP TABLE cascades): a
    plain `engine.begin()` connection (pragma on) must get an error, and the data stays."""
    engine = _sqlite_engine(tmp_path)
    try:
        _migrate(engine, "0004_liveness")
        _populate(engine)
        rows = _contents(engine)
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with pytest.raises(RuntimeError, match="foreign-key enforcement off"), engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
        assert _contents(engine) == rows and _autoincrement_tables(engine) == set()
    finally:
        engine.dispose()


def test_a_sqlite_upgrade_failing_half_way_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    """One transaction, DDL included: a table left over in the way of the images rebuild fails
    the upgrade after `users` was rebuilt; nothing of it may stay (pysqlite alone would have
    committed the rebuild's CREATE TABLE), the upgrade can be run again, and the pooled connection
    has foreign-key enforcement back."""
    engine = _sqlite_engine(tmp_path)
    try:
        _migrate(engine, "0004_liveness")
        _populate(engine)
        _sql(engine, "CREATE TABLE _alembic_tmp_images (x INTEGER)")
        rows, schema = _contents(engine), _schema(engine)
        with pytest.raises(OperationalError, match="_alembic_tmp_images already exists"):
            upgrade_to_head(engine)
        assert _contents(engine) == rows and _schema(engine) == schema
        assert current_revision(engine) == "0004_liveness" and _autoincrement_tables(engine) == set()
        assert _sql(engine, "PRAGMA foreign_keys") == [(1,)]

        _sql(engine, "DROP TABLE _alembic_tmp_images")
        upgrade_to_head(engine)
        assert current_revision(engine) == HEAD and _autoincrement_tables(engine) == NEVER_REUSED
        assert _sql(engine, "PRAGMA foreign_keys") == [(1,)]
    finally:
        engine.dispose()


@contextmanager
def _service(settings: Settings, face_engine: Any) -> Iterator[TestClient]:
    """The app over HTTP with its lifespan (start-up migration if enabled, store repair)."""
    from service.app import create_app

    with TestClient(create_app(settings, face_engine=face_engine), raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()
        yield client


def _enrol(client: TestClient, user_id: str, photo: tuple[str, int]) -> int:
    files = {"images": ("p.jpg", lfw_bytes(*photo), "image/jpeg")}
    response = client.post("/enroll", data={"user_id": user_id}, files=files)
    assert response.status_code == 201, response.text
    return int(response.json()["enrolled"][0]["image_id"])


def _votes(client: TestClient, user_id: str, photo: tuple[str, int]) -> tuple[int, int]:
    """(votes, comparisons): with the tiny model's sharp head only the same stored photo votes."""
    probe = {"image": ("probe.jpg", lfw_bytes(*photo), "image/jpeg")}
    response = client.post("/verify", data={"user_id": user_id}, files=probe)
    assert response.status_code == 200, response.text
    return int(response.json()["votes"]), int(response.json()["comparisons"])


@pytest.mark.lfw
def test_a_populated_0004_sqlite_service_upgrades_keeping_rows_ids_and_encrypted_blobs(
    tmp_path: Path, tiny_model_dir: Path, face_engine: Any
) -> None:
    """An existing deployment: the 0004 service enrols real photos and deletes the newest one;
    `faceverify db upgrade` then rebuilds the tables. Every value stays (ids, foreign keys, sealed
    blobs whose associated data names the user row), the service starts on it (start-up migration,
    store repair dropping nothing), every blob decrypts and votes, and the deleted id, known
    from the audit trail, is not handed out again."""
    from service.cli import main as cli

    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'fv.db'}", model_dir=tiny_model_dir
    )
    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        _migrate(engine, "0004_liveness")
        with _service(settings.model_copy(update={"migrate_on_startup": False}), face_engine) as client:
            _enrol(client, "bob", BOB)
            alice = [_enrol(client, "alice", photo) for photo in ALICE]
            assert client.post("/liveness/challenge", data={"user_id": "alice"}).status_code == 201
            assert client.delete(f"/users/alice/images/{alice[-1]}").status_code == 200
        rows, schema = _contents(engine), _schema(engine)
        assert len(rows["images"]) == 3 and len(rows["liveness_challenges"]) == 1

        url = settings.database_url
        assert cli.main(["db", "upgrade", "--data-dir", str(settings.data_dir), "--database-url", url]) == 0
        assert current_revision(engine) == HEAD and _autoincrement_tables(engine) == NEVER_REUSED
        assert _contents(engine) == {**rows, "alembic_version": [(HEAD,)]} and _schema(engine) == schema
        assert _sql(engine, "PRAGMA integrity_check") == [("ok",)]
        assert _sql(engine, "PRAGMA foreign_key_check") == []

        with _service(settings, face_engine) as client:
            assert _contents(engine) == {**rows, "alembic_version": [(HEAD,)]}  # repair dropped nothing
            keyring, store = client.app.state.keyring, client.app.state.store
            with client.app.state.session_factory() as session:
                for image in session.scalars(select(Image)):
                    assert image.key_id is not None and image.vector(keyring).shape == (32,)
                    photo = store.read_photo(image.path, image.user_pk, image.sha256)
                    assert hashlib.sha256(photo).hexdigest() == image.sha256
            assert _votes(client, "alice", ALICE[0]) == (1, 2) and _votes(client, "bob", BOB) == (1, 1)

            again = _enrol(client, "alice", ALICE[-1])  # the deleted photo, enrolled again
            assert again > alice[-1], (alice, again)
            retried = client.delete(f"/users/alice/images/{alice[-1]}")
            assert retried.status_code == 404 and _votes(client, "alice", ALICE[-1]) == (1, 3)
    finally:
        engine.dispose()


def test_a_sqlite_upgrade_with_nothing_to_do_does_not_need_the_write_lock(tmp_path: Path) -> None:
    """Every start and CLI command runs the upgrade: at head it must only read, not fail with
    `database is locked` while a running service holds a write transaction."""
    url = f"sqlite:///{tmp_path / 'faceverify.db'}"
    engine = create_db_engine(url, Settings(_env_file=None, sqlite_busy_timeout_s=0.2))
    writer = create_db_engine(url)
    try:
        upgrade_to_head(engine)
        with writer.connect() as busy:
            busy.exec_driver_sql("BEGIN IMMEDIATE")  # the service's write lock, held
            busy.exec_driver_sql("INSERT INTO verify_lockouts VALUES ('x', 1, NULL, NULL, 0)")
            upgrade_to_head(engine)
            busy.rollback()
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()
        writer.dispose()
