"""SQLite: an id is never handed out twice (AUTOINCREMENT on every table with a surrogate key).

Why: a plain SQLite `INTEGER PRIMARY KEY` gives a new row max(rowid) + 1, so deleting the row with
the largest id freed that id: image 7 deleted, the next photo enrolled was image 7 again, and a
client retrying its DELETE of image 7 (or an audit entry naming it) hit a different photo.
AUTOINCREMENT keeps the largest id ever used in `sqlite_sequence` and never goes below it.
PostgreSQL: nothing to do, its sequences never reuse an id.

Tables: users, images, api_keys, liveness_challenges, liveness_burst_hashes. Not audit_log (its seq
is assigned from audit_head.last_seq, which only grows), audit_head (one row, id 1) nor
verify_lockouts (keyed by user_id).

How: each table is rebuilt by Alembic's batch mode (new table with AUTOINCREMENT, every row copied
with its id, old table dropped, new one renamed, its indexes re-created; constraints, names and
foreign keys as reflected; only the primary key's constraint name goes, as SQLite writes an
AUTOINCREMENT key inline and unnamed, and nothing refers to it). Copying the rows seeds
`sqlite_sequence` with the largest id still there; for images it is raised to the largest id a
successful `delete_image` audit entry names, so the deletion that showed the defect does not
repeat across this upgrade. Ids deleted earlier and recorded nowhere cannot be known. Encrypted
blobs are untouched: their associated data names user row ids and hashes, which the copy keeps.

It needs foreign-key enforcement off (dropping `users` with it on would first delete every image
through ON DELETE CASCADE) and one transaction: `service.storage.database.migration_transaction`,
which `faceverify db upgrade`, the start-up migration and `alembic` (service/storage/migrations/env.py)
all use; with enforcement on it refuses to run.

Revision ID: 0005_ids_never_reused
Revises: 0004_liveness
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ids_never_reused"
down_revision: str | None = "0004_liveness"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "images", "api_keys", "liveness_challenges", "liveness_burst_hashes")


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    _rebuild(connection, autoincrement=True)
    _raise_sequence(connection, "images", _largest_deleted_image_id(connection))


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    _rebuild(connection, autoincrement=False)


def _rebuild(connection: sa.Connection, *, autoincrement: bool) -> None:
    """Recreate each table with or without AUTOINCREMENT, keeping rows, ids, keys and indexes."""
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "migration 0005 rebuilds tables that others reference and must run with SQLite's "
            "foreign-key enforcement off (else dropping `users` deletes every image): run it with "
            "`faceverify db upgrade` (service.storage.database.migration_transaction)"
        )
    violations_before = _foreign_key_violations(connection)
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    if _foreign_key_violations(connection) != violations_before:
        raise RuntimeError("migration 0005: the rebuilt tables no longer match their foreign keys")


def _foreign_key_violations(connection: sa.Connection) -> list[tuple[object, ...]]:
    return sorted(tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check"))


def _largest_deleted_image_id(connection: sa.Connection) -> int:
    """The largest image id a successful `delete_image` audit entry names (0 if none)."""
    audit = sa.table("audit_log", sa.column("action"), sa.column("outcome"), sa.column("summary"))
    query = sa.select(audit.c.summary).where(audit.c.action == "delete_image", audit.c.outcome == "ok")
    largest = 0
    for summary in connection.scalars(query):
        try:
            image_id = json.loads(summary).get("image_id")
        except (ValueError, TypeError, AttributeError):  # not the JSON object the API writes
            continue
        if isinstance(image_id, int) and not isinstance(image_id, bool):
            largest = max(largest, image_id)
    return largest


def _raise_sequence(connection: sa.Connection, table: str, at_least: int) -> None:
    """Make the next id of `table` larger than `at_least` (sqlite_sequence may be written to)."""
    current = connection.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).scalar()
    if current is None and at_least > 0:
        connection.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, at_least))
    elif current is not None and at_least > current:
        connection.exec_driver_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (at_least, table))
