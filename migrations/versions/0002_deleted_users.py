"""Keep deleted users' tombstones, to restore the relays' revocation copy from them.

Revision ID: 0002_deleted_users
Revises: 0001_users
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_deleted_users"
down_revision: str | None = "0001_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deleted_users")),
    )
    op.create_index(
        op.f("ix_deleted_users_deleted_at"), "deleted_users", ["deleted_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deleted_users_deleted_at"), table_name="deleted_users")
    op.drop_table("deleted_users")
