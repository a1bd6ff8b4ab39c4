"""Store identity (the photo store belongs to this database) and indexes for the liveness sweep.

Revision ID: 0006_store_identity
Revises: 0005_ids_never_reused
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_store_identity"
down_revision: str | None = "0005_ids_never_reused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_store_identity"),
    )
    op.create_index("ix_liveness_challenges_expires_at", "liveness_challenges", ["expires_at"])
    op.create_index("ix_liveness_burst_hashes_created", "liveness_burst_hashes", ["created"])


def downgrade() -> None:
    op.drop_index("ix_liveness_burst_hashes_created", table_name="liveness_burst_hashes")
    op.drop_index("ix_liveness_challenges_expires_at", table_name="liveness_challenges")
    op.drop_table("store_identity")
