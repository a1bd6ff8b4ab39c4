"""Alembic environment: runs against a connection handed in by `service.storage.database.upgrade_to_head`,
or, for developers using `alembic` with the repo's alembic.ini, against `sqlalchemy.url` /
`FACEVERIFY_DATABASE_URL`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.runtime.config import Settings
from service.storage.database import create_db_engine, migration_transaction
from service.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings().sqlalchemy_url
    engine = create_db_engine(url, bounded=False)  # migrations: no statement deadline
    try:
        with engine.connect() as conn, migration_transaction(conn):  # on SQLite: atomic, FKs off
            _run(conn)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or Settings().sqlalchemy_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
