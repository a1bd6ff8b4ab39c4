"""Liveness: challenges (single-use, expiring, bound to a user and an API key) and burst hashes.

Revision ID: 0004_liveness
Revises: 0003_storage
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_liveness"
down_revision: str | None = "0003_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "liveness_challenges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.String(length=64), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("api_key_name", sa.String(length=64), nullable=True),
        sa.Column("steps", sa.String(length=128), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_pk"], ["users.id"], name="fk_liveness_challenges_user_pk_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_liveness_challenges"),
        sa.UniqueConstraint("challenge_id", name="uq_liveness_challenges_challenge_id"),
    )
    op.create_table(
        "liveness_burst_hashes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chip_hash", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_pk"], ["users.id"], name="fk_liveness_burst_hashes_user_pk_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_liveness_burst_hashes"),
    )
    op.create_index("ix_liveness_burst_hashes_user_pk", "liveness_burst_hashes", ["user_pk"])


def downgrade() -> None:
    op.drop_index("ix_liveness_burst_hashes_user_pk", table_name="liveness_burst_hashes")
    op.drop_table("liveness_burst_hashes")
    op.drop_table("liveness_challenges")
