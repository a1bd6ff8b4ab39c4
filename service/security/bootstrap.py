"""First start with no API key at all: create an admin key and leave it in DATA_DIR/admin-api-key.

This keeps `make serve` working with no set-up while never running open: the secret is written
to a file only its owner can read (0600, created exclusively) and the log says where, never what.
Two replicas starting together race on the key's unique name; the loser creates nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from service.errors import Conflict
from service.security import audit, keys

log = logging.getLogger("faceverify.security")

BOOTSTRAP_KEY_NAME = "bootstrap-admin"


def write_secret_file(path: Path, secret: str) -> None:
    """Write `secret` to a new file with mode 0600 (replacing a stale file left by an old database)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")


def ensure_admin_key(
    session_factory: audit.SessionFactory, key_file: Path, given_secret: str | None = None
) -> bool:
    """Create the bootstrap admin key if the database has no key; True if this call created it.

    With `given_secret` (FACEVERIFY_ADMIN_API_KEY: a deployment's secret store, the test suites)
    that secret becomes the admin key and no file is written; else a new one goes to `key_file`."""
    with session_factory() as session:
        if keys.any_key_exists(session):
            return False
        try:
            secret = keys.create_key(session, BOOTSTRAP_KEY_NAME, frozenset({"admin"}), given_secret)
        except Conflict:
            return False  # another replica won the race
    if given_secret is not None:
        log.warning("no API key existed: created admin key %r from FACEVERIFY_ADMIN_API_KEY",
                    BOOTSTRAP_KEY_NAME)  # fmt: skip
        _audit_creation(session_factory)
        return True
    write_secret_file(key_file, secret)
    _audit_creation(session_factory)
    log.warning("no API key existed: created admin key %r; its secret is in %s (mode 0600)",
                BOOTSTRAP_KEY_NAME, key_file.resolve())  # fmt: skip
    return True


def _audit_creation(session_factory: audit.SessionFactory) -> None:
    audit.append(
        session_factory,
        audit.AuditEvent("key_create", "ok", key_name=None, client="startup",
                         summary={"name": BOOTSTRAP_KEY_NAME, "scopes": ["admin"]}),
    )  # fmt: skip
