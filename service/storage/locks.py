"""Per-user serialisation of writes (enrol, delete, store repair, key rotation), across processes.

Enrol and delete of the same user must not interleave (issue 8: a DELETE removing the folder an
enrolment was writing into, acknowledgements of images that were never stored). The lock is taken
inside the caller's database transaction and released by its commit or rollback, also when the
process dies, so a crash can never leave it held:

* PostgreSQL: `pg_advisory_xact_lock` on a 64-bit key derived from the user's store directory
  name: per user, and shared by every replica on that database.
* SQLite: a no-op write statement, which takes SQLite's single write lock (waiting up to the busy
  timeout). That serialises all writers of the file, per user included, across processes.

The key is the store directory name (a hash of the user id), so the start-up repair can lock a
directory it finds on disk without knowing which user id it belonged to.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def advisory_key(dir_name: str) -> int:
    """Signed 64-bit key from the first 16 hex digits of the directory name."""
    value = int(dir_name[:16], 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def lock_user_dir(session: Session, dir_name: str) -> None:
    """Block until this transaction holds the write lock for `dir_name` (held until commit/rollback)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(dir_name)})
    else:
        session.execute(text("UPDATE users SET id = id WHERE 0"))
