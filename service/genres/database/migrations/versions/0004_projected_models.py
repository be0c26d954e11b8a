"""Which model made the predictions stored for a track.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

The projector writes ``tracks.extra`` and changes no other key of it (INTERFACE.md), so the
model and version of the stored predictions live in the service's own table, one row per
track, written in the same statement as ``extra``. ``genres backfill --other-model`` selects
the tracks whose row names another model or version than the configured one (or none).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Keyed by track alone: it describes what tracks.extra holds now, one set of predictions.
PROJECTED_MODELS = """
    CREATE TABLE IF NOT EXISTS projected_models (
        track_id BIGINT NOT NULL,
        file_id TEXT NOT NULL,
        model_name TEXT NOT NULL,
        model_version TEXT NOT NULL,
        projected_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT projected_models_pkey PRIMARY KEY (track_id)
    )
"""


def upgrade() -> None:
    op.execute(PROJECTED_MODELS)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS projected_models")
