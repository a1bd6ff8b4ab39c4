"""Fixtures for the service tests: real models, real LFW photos, real SQLite and PostgreSQL.

* `tiny_model_dir`: a tiny but real SavedModel exported with `training.export` (random tower, sharp
  head: the same photo votes, other photos do not; see `export_sharp_tiny_model`).
* `face_engine`: the real face pipeline + that model, loaded once per session.
* `backend`: every API test runs twice, against SQLite in a temp dir and against a throwaway
  PostgreSQL database created for this session on 127.0.0.1:5432 (dropped at the end).
* `client`: the app over HTTP, sending the admin API key created at start-up by default.
* `live_app`: the same app behind a real loopback socket (uvicorn in a thread), for concurrency.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PG_HOST = os.environ.get("FACEVERIFY_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FACEVERIFY_TEST_PG_PORT", "5432"))


def export_sharp_tiny_model(out_dir: Path, version: str) -> Path:
    """A tiny, real served model built and exported with training.export, with a sharp head.

    The random tiny tower maps different faces to embeddings only ~0.003-0.1 apart in cosine
    distance, so `export_tiny_test_model`'s head (votes up to ~0.05) lets everybody vote. Here the
    head votes only below ~0.0015: the same photo (even re-encoded or EXIF-rotated, ~1e-5 apart)
    votes and any other photo does not, which makes verified/not-verified testable without the
    (slow) release model.
    """
    from training.export import build_model_card, build_tiny_tower, export_served_model
    from training.siamese import build_embedding_model, build_similarity_head

    embedding = build_embedding_model(build_tiny_tower(150, 32, seed=7), 150, mirror=False)
    head = build_similarity_head(32, "cosine")
    head.get_layer("classifier").set_weights([np.array([[-2000.0]], np.float32), np.array([3.0], np.float32)])
    card = build_model_card(
        name="faceverify-tiny-sharp-test",
        version=version,
        tower="tiny_random_cnn",
        distance="cosine",
        input_size=150,
        embedding_dim=32,
        mirror=False,
        data="none (random weights, for service tests only)",
    )
    return export_served_model(embedding, head, out_dir, card)


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model_dir(models_root: Path) -> Path:
    return export_sharp_tiny_model(models_root / "tiny", "tiny-test-1")


@pytest.fixture(scope="session")
def face_engine(tiny_model_dir: Path):
    from service.faces.engine import FaceEngine

    return FaceEngine(tiny_model_dir)


# ---------------------------------------------------------------------------------------- PostgreSQL


def _pg_admin_connect():
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
    except Exception as exc:  # CI has it: a skip here would hide every PostgreSQL half of the suite
        pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: {exc}")
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

    from service.runtime.config import normalise_database_url
    from service.storage.database import create_db_engine

    engine = create_db_engine(normalise_database_url(url))
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.begin() as connection:
            if "images" in tables:
                connection.execute(text("TRUNCATE images, users RESTART IDENTITY CASCADE"))
            if "api_keys" in tables:  # the security tables (migration 0002_security)
                connection.execute(text("TRUNCATE api_keys, verify_lockouts, audit_log RESTART IDENTITY"))
                connection.execute(
                    text(
                        "UPDATE audit_head SET last_seq = 0, last_hash = :g, anchor_seq = 0, anchor_hash = :g"
                    ),
                    {"g": "0" * 64},
                )
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------- app


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, tiny_model_dir: Path):
    from service.runtime.config import Settings

    return Settings(data_dir=tmp_path / "data", database_url=backend.url, model_dir=tiny_model_dir)


@pytest.fixture
def client(settings, face_engine):
    """The app over HTTP (ASGI, lifespan run: migrations to head on start-up), sharing the session's
    loaded engine."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    # Server errors come back as the 500 JSON a client would get (the traceback is logged).
    # Every request carries the admin key the app created on its first start (DATA_DIR/admin-api-key);
    # security tests override or drop the header per request.
    app = create_app(settings, face_engine=face_engine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()
        yield test_client


@dataclass
class LiveApp:
    """The app behind a real socket: its URL, the admin key's headers, and the app (for its state)."""

    url: str
    headers: dict[str, str]
    app: Any


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a daemon thread; yields its URL.

    Why a thread and not TestClient: tests of concurrent requests need real connections and the
    server's own scheduling (each sync route in the thread pool), exactly as `faceverify serve`.
    The process's logging is left alone (log_config=None), so caplog still sees the app's records.
    """
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app's server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live_app(settings, face_engine) -> Iterator[LiveApp]:
    """`create_app` on a real loopback socket (SQLite and PostgreSQL, like `client`), with the admin
    key the app created at start-up."""
    from service.app import create_app

    app = create_app(settings, face_engine=face_engine)
    with serve_in_thread(app) as url:
        headers = {"X-API-Key": settings.admin_key_file.read_text().strip()}
        yield LiveApp(url, headers, app)
