"""The pace of Replicate prediction creations, shared by every classifier on an account.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

One row per account: the time before which no further creation may be sent. Each classifier
process books its creations' slots here, so the account's cap holds whatever the number of
processes, and a restarted process continues the pace instead of bursting.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS replicate_pace (
            account TEXT NOT NULL,
            next_at TIMESTAMPTZ NOT NULL,
            CONSTRAINT replicate_pace_pkey PRIMARY KEY (account)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS replicate_pace")
