"""Settings, and Alembic migrations on SQLite and PostgreSQL (idempotent, concurrent, matching the models)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from service.core.config import Settings, normalise_database_url
from service.core.db import create_db_engine, current_revision, head_revision, upgrade_to_head
from service.db_models import Base


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
        assert current_revision(engine) == head_revision(engine) == "0004_liveness"
        assert {"users", "images", "alembic_version"} <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
