"""Database engine, sessions and schema migration (Alembic, configured programmatically).

`faceverify db upgrade` and the app's start-up both call `upgrade_to_head`, which works from an
installed package (no alembic.ini needed) and is safe when several replicas start at once: on
PostgreSQL the upgrade runs under a transaction-scoped advisory lock, on SQLite under a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.runtime.config import Settings

# The schema's history lives beside the code that opens the database (storage owns both); found by
# path, so opening a database never imports the migration scripts (they import this module).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# An arbitrary constant shared by every replica: pg_advisory_xact_lock key for schema upgrades.
_MIGRATION_LOCK_KEY = 0x46564D31  # "FVM1"


class DatabaseDeadlineExceeded(psycopg.OperationalError):
    """A PostgreSQL round trip outlived the client-side deadline; the connection was closed."""


class DeadlineConnection(psycopg.Connection[Any]):
    """psycopg connection whose every round trip (execute, fetch, commit, rollback, pre-ping) has a
    client-side deadline.

    Why: a frozen server (SIGSTOP, a stuck VM) still gets TCP ACKs from its kernel, so neither
    keepalives nor server-side timeouts end a query already sent; without this the request thread
    waits for ever. On expiry the connection is closed (it is mid-protocol, unusable) and an
    OperationalError raised, which SQLAlchemy treats as a disconnect (pool invalidation) and the API
    maps to 503 `database_unavailable`.
    """

    deadline_s: float = 5.0

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            return super().wait(gen, interval=interval, timeout=timeout or self.deadline_s)
        except _WAIT_TIMEOUT as exc:
            self.close()
            raise DatabaseDeadlineExceeded(
                f"no answer from the database within {self.deadline_s:g} s"
            ) from exc


# psycopg raises this private class from Connection.wait(timeout=...); looked up once, by name.
_WAIT_TIMEOUT: type[BaseException] = getattr(psycopg.errors, "_WaitTimeout")  # noqa: B009


def create_db_engine(url: str, settings: Settings | None = None, *, bounded: bool = True) -> Engine:
    """Engine with the per-backend settings the service relies on, and bounded waits everywhere.

    SQLite: usable from FastAPI's thread pool, waits (a short, bounded time) instead of failing when
    another writer holds the lock, WAL so readers do not block writers, foreign keys on.
    PostgreSQL: connect timeout, server-side statement_timeout, a client-side deadline on each round
    trip (`DeadlineConnection`), a bounded pool with a short checkout wait, so a dead or frozen server
    makes requests fail within seconds (503) instead of queueing, and recovery needs no restart
    (pre-ping drops dead connections). `bounded=False` (schema migrations: a long ALTER, or waiting
    for another replica's migration lock, is legitimate) keeps only the connect timeout.
    """
    settings = settings or Settings()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        busy_s = settings.sqlite_busy_timeout_s
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_s})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
            cursor.close()

        return engine

    if not bounded:
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": settings.db_connect_timeout_s}
        )
    deadline_s = settings.db_deadline_s

    class _Connection(DeadlineConnection):
        pass

    _Connection.deadline_s = deadline_s
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={
            "connect_timeout": settings.db_connect_timeout_s,
            "options": f"-c statement_timeout={int(settings.db_statement_timeout_s * 1000)}",
        },
    )

    @event.listens_for(engine, "do_connect")
    def _deadline_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return _Connection.connect(*cargs, **cparams)

    return engine


# SQLAlchemy failures that mean "the database is not answering" (not a bug in our SQL): the API
# turns these into 503 database_unavailable with Retry-After in one place (service.http.errors).
_OUTAGE_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # pool checkout wait exceeded
    sa_exc.DisconnectionError,
)


def is_database_outage(exc: BaseException) -> bool:
    """True when `exc` says the database is down, frozen, locked or out of connections."""
    if isinstance(exc, _OUTAGE_ERRORS):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """Alembic configuration built in code, pointing at this package's `migrations/` wherever installed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def migration_transaction(connection: Connection) -> Iterator[None]:
    """The one transaction a schema upgrade runs in; on SQLite atomic and without foreign-key
    enforcement (migration 0005 refuses to run otherwise).

    Why, on SQLite: (1) pysqlite opens a transaction only before INSERT/UPDATE/DELETE, so the
    CREATE TABLE of a table rebuild would commit on its own, and an upgrade failing half-way would
    leave a stray table behind that breaks every later start; an explicit BEGIN makes the whole
    upgrade one transaction (SQLite's DDL is transactional). It is a deferred BEGIN: an upgrade
    with nothing to do only reads, and never waits for the write lock of a running service.
    (2) A rebuild drops the old table, and with enforcement on, dropping `users` first deletes its
    rows with their ON DELETE CASCADE: every image would go. The pragma is a no-op inside a
    transaction, so it is set before BEGIN and restored after the commit or rollback; a connection
    where that fails is discarded, never handed back to the pool with enforcement off.
    """
    if connection.dialect.name != "sqlite":
        with connection.begin():
            yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        with connection.begin():
            connection.exec_driver_sql("BEGIN")  # pysqlite then adds no BEGIN of its own
            yield
    finally:
        try:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
        except BaseException:
            connection.invalidate()
            raise


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision; idempotent and serialised across processes."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            # Transaction-scoped: released at commit, also if this process dies mid-upgrade.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
        return
    with _sqlite_file_lock(engine), engine.connect() as connection, migration_transaction(connection):
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    return ScriptDirectory.from_config(cfg).get_current_head()
