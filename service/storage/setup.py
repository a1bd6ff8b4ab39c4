"""Opening the storage at start-up: private permissions, the key ring, the photo store.

Biometric data must not be readable by other local users (issue 9: the SQLite file was 0644): the
data directory and the store are 0700, a SQLite database is created 0600 before SQLite first opens
it (SQLite gives its -wal and -shm files the database file's mode), and `faceverify serve` runs
under umask 077 so anything else written later is private too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from service.runtime.config import Settings
from service.storage.crypto import KeyRing, ensure_private_dir
from service.storage.photos import ImageStore

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


def open_storage(settings: Settings) -> tuple[KeyRing, ImageStore]:
    """Key ring (env key or the DATA_DIR key file, created on first start) and the photo store."""
    ensure_private_dir(settings.data_dir)
    private_sqlite_file(settings.sqlalchemy_url)
    key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    keyring = KeyRing.from_settings(settings.data_dir, key, settings.encryption_old_keys.get_secret_value())
    store = ImageStore(settings.image_dir, keyring)
    store.ensure_root()
    return keyring, store
