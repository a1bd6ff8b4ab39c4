"""Storage: embeddings-only rows (`photo_stored`), the key that sealed a row (`key_id`), and each
user's photo directory (`users.store_dir`, so the crash repair can find a directory's rows).

Rows written before encryption keep `key_id` NULL: their photo and embedding are plaintext until
`faceverify encryption rotate` seals them. Every existing row has its photo (`photo_stored` true).

Revision ID: 0003_storage
Revises: 0002_security
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_storage"
down_revision: str | None = "0002_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("images", sa.Column("photo_stored", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("images", sa.Column("key_id", sa.String(length=16), nullable=True))
    op.add_column("users", sa.Column("store_dir", sa.String(length=32), nullable=True))
    op.create_index("ix_users_store_dir", "users", ["store_dir"])
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.String),
        sa.column("store_dir", sa.String),
    )
    connection = op.get_bind()
    for pk, user_id in connection.execute(sa.select(users.c.id, users.c.user_id)).all():
        connection.execute(users.update().where(users.c.id == pk).values(store_dir=_dir_name(user_id)))


def _dir_name(user_id: str) -> str:
    """Frozen copy of service.storage.photos.user_dir_name (a migration must not change when the app does)."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:32]


def downgrade() -> None:
    op.drop_index("ix_users_store_dir", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("store_dir")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("key_id")
        batch.drop_column("photo_stored")
