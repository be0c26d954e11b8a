"""The backend's job id of a classification in flight, so a redelivery resumes it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

When the classifier dies while a Replicate prediction runs, the redelivered record finds the
prediction's id here and polls it instead of paying for a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE genre_classifications ADD COLUMN IF NOT EXISTS job_id TEXT")


def downgrade() -> None:
    op.execute("ALTER TABLE genre_classifications DROP COLUMN IF EXISTS job_id")
