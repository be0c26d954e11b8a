"""Who answered a recorded classification, when it is not the ledger key's model.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

``CLASSIFIER_BACKEND=cascade`` claims under one key (the cascade: head, Replicate version,
threshold) while its answer comes from the head or from Replicate. A duplicate or redelivered
record replays the outcome from the ledger; ``answered`` keeps the answering model and the
cascade's route so that the replayed event says the same as the first. NULL for the other
backends, whose answer is the key's model.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE genre_classifications ADD COLUMN IF NOT EXISTS answered JSONB")


def downgrade() -> None:
    op.execute("ALTER TABLE genre_classifications DROP COLUMN IF EXISTS answered")
