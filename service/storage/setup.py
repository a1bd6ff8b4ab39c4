"""Opening the storage at start-up: private permissions, the key ring, the photo store.

Biometric data must not be readable by other local users (issue 9: the SQLite file was 0644): the
data directory and the store are 0700, a SQLite database is created 0600 before SQLite first opens
it (SQLite gives its -wal and -shm files the database file's mode), and `faceverify serve` runs
under umask 077 so anything else written later is private too.

The key file is created only for a database that holds no sealed row (issue 18): a restart without
it used to make a new key silently, so every stored user became unreadable and new enrolments were
sealed under a second key generation. With sealed rows and no key file the ring is empty
(`KeyRing.missing`): the service is not ready and says which file is missing; the CLI refuses.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url

from service.runtime.config import Settings
from service.storage.crypto import KEY_FILE_NAME, KeyConfigError, KeyRing, ensure_private_dir
from service.storage.photos import ImageStore
from service.storage.tables import Image

PRIVATE_UMASK = 0o077


def private_sqlite_file(url: str) -> None:
    """Create the SQLite database file 0600 (or tighten it) before SQLite opens it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    ensure_private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(f"{path}{suffix}", 0o600)


def prepare_private_files(settings: Settings) -> None:
    """DATA_DIR 0700 and the SQLite file 0600, before anything (SQLite included) creates them."""
    ensure_private_dir(settings.data_dir)
    private_sqlite_file(settings.sqlalchemy_url)


def sealed_rows(engine: Engine) -> int:
    """Image rows sealed with some key (0 for a database whose schema is not there yet)."""
    if not inspect(engine).has_table(Image.__tablename__):
        return 0
    with engine.connect() as connection:
        return int(
            connection.scalar(select(func.count()).select_from(Image).where(Image.key_id.is_not(None))) or 0
        )


def open_storage(settings: Settings, engine: Engine | None = None) -> tuple[KeyRing, ImageStore]:
    """Key ring (env key, or the DATA_DIR key file) and the photo store.

    The key file is created when missing only if `engine`'s database holds no sealed row (or no
    engine is given: tests and tools that open a store they just made); otherwise the ring is
    `KeyRing.missing(path)`, whose `problem()` names the file.

    With an `engine`, the SQLite file is NOT touched here: opening and closing another descriptor
    of a database file this process has open drops the process's POSIX locks on it, and SQLite in
    WAL mode then lets another process checkpoint and remove the WAL under it (committed
    transactions lost). Callers run `prepare_private_files` before creating their engine."""
    if engine is None:
        prepare_private_files(settings)
    else:
        ensure_private_dir(settings.data_dir)
    key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    old = settings.encryption_old_keys.get_secret_value()
    path = settings.data_dir / KEY_FILE_NAME
    if key is None and not path.exists() and engine is not None:
        count = sealed_rows(engine)
        if count:
            keyring = KeyRing.missing(path)
            store = ImageStore(settings.image_dir, keyring)
            store.ensure_root()
            return keyring, store
    keyring = KeyRing.from_settings(settings.data_dir, key, old)
    store = ImageStore(settings.image_dir, keyring)
    store.ensure_root()
    return keyring, store


def missing_key_message(settings: Settings, engine: Engine) -> str:
    """What to tell an operator whose key file is gone while the database holds sealed rows."""
    return (
        f"the database holds {sealed_rows(engine)} sealed row(s) but the encryption key file "
        f"{settings.data_dir / KEY_FILE_NAME} is missing: restore it from its backup (or set "
        "FACEVERIFY_ENCRYPTION_KEY); a new key is NOT created, it would make them unreadable"
    )


def require_keys(keyring: KeyRing, settings: Settings, engine: Engine) -> None:
    """For the CLI: refuse to go on without the key that sealed the stored rows."""
    if keyring.problem() is not None:
        raise KeyConfigError(missing_key_message(settings, engine))
