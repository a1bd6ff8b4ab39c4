"""Fixtures for the service tests: real models, real LFW photos, real SQLite and PostgreSQL.

* `tiny_model_dir`: a tiny but real SavedModel exported by `training.export.export_tiny_test_model`
  (random tower; an image compared with itself votes, other images rarely do).
* `face_engine`: the real face pipeline + that model, loaded once per session.
* `backend`: every API test runs twice, against SQLite in a temp dir and against a throwaway
  PostgreSQL database created for this session on 127.0.0.1:5432 (dropped at the end).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
LFW_IMAGES = DATA_ROOT / "lfw" / "images"
PG_HOST = os.environ.get("FACEVERIFY_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FACEVERIFY_TEST_PG_PORT", "5432"))


def lfw_photo(person: str, number: int) -> Path:
    """Path of an LFW photo; skips the test when the shared data set is not present."""
    path = LFW_IMAGES / person / f"{person}_{number:04d}.jpg"
    if not path.is_file():
        pytest.skip(f"LFW data not found at {LFW_IMAGES} (expected ../shared/data relative to the repo)")
    return path


def lfw_bytes(person: str, number: int) -> bytes:
    return lfw_photo(person, number).read_bytes()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export import export_tiny_test_model

    return export_tiny_test_model(tmp_path_factory.mktemp("models") / "tiny", version="tiny-test-1")


@pytest.fixture(scope="session")
def face_engine(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from service.engine import FaceEngine

    return FaceEngine(tiny_model_dir)


# ---------------------------------------------------------------------------------------- PostgreSQL


def _pg_admin_connect():  # type: ignore[no-untyped-def]
    import psycopg

    errors = []
    for user in ("postgres", "root"):
        try:
            return psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="test", autocommit=True, connect_timeout=5
            ), user
        except psycopg.Error as exc:
            errors.append(f"{user}: {exc}")
    raise RuntimeError("; ".join(errors))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Factory of throwaway databases (CREATE DATABASE faceverify_test_<random>), all dropped at the end."""
    try:
        admin, user = _pg_admin_connect()
    except Exception as exc:  # the suite must still run where no PostgreSQL is available
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: {exc}")
    created: list[str] = []

    def create() -> str:
        name = f"faceverify_test_{secrets.token_hex(6)}"
        admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{name}"

    try:
        yield create
    finally:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """The database the API tests share (emptied before each test)."""
    return postgres_databases()


@dataclass
class Backend:
    name: str
    url: str


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A clean, empty database: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'db' / 'faceverify.db'}")
        return
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    yield Backend("postgres", url)
    _truncate(url)


def _truncate(url: str) -> None:
    from sqlalchemy import inspect, text

    from service.core.config import normalise_database_url
    from service.core.db import create_db_engine

    engine = create_db_engine(normalise_database_url(url))
    try:
        if inspect(engine).has_table("images"):
            with engine.begin() as connection:
                connection.execute(text("TRUNCATE images, users RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------- app


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from service.core.config import Settings

    return Settings(data_dir=tmp_path / "data", database_url=backend.url, model_dir=tiny_model_dir)


@pytest.fixture
def client(settings, face_engine):  # type: ignore[no-untyped-def]
    """The app over HTTP (ASGI, lifespan run: migrations to head on start-up), sharing the session's
    loaded engine."""
    from fastapi.testclient import TestClient

    from service.main import create_app

    with TestClient(create_app(settings, face_engine=face_engine)) as test_client:
        yield test_client
