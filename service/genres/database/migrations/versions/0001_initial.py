"""Initial schema: the platform's tables when missing, and the service's own tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

The platform's ``tracks``, ``tags`` and ``track_tags`` may already exist in a platform
database (with more columns): they are created only when missing, with docs/interface.md's
minimal DDL, and never dropped. The service's tables are the service's to create and drop.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLATFORM_DDL = (
    """
    CREATE TABLE IF NOT EXISTS tracks (
        id BIGINT PRIMARY KEY,
        file_id TEXT,
        audio_url TEXT,
        extra JSONB NOT NULL DEFAULT '{}'
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS tags (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS track_tags (
        track_id BIGINT REFERENCES tracks(id),
        tag_id BIGINT REFERENCES tags(id),
        PRIMARY KEY (track_id, tag_id)
    )
    """,
)

SERVICE_DDL = (
    # No foreign key to tracks: the classifier may classify a track the database lacks.
    """
    CREATE TABLE IF NOT EXISTS genre_classifications (
        track_id BIGINT NOT NULL,
        file_id TEXT NOT NULL,
        model_name TEXT NOT NULL,
        model_version TEXT NOT NULL,
        status TEXT NOT NULL,
        predictions JSONB,
        event_id TEXT,
        source_event_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        error JSONB,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT genre_classifications_pkey
            PRIMARY KEY (track_id, file_id, model_name, model_version),
        CONSTRAINT ck_genre_classifications_status
            CHECK (status IN ('pending', 'succeeded', 'failed'))
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS classification_requests (
        track_id BIGINT NOT NULL,
        file_id TEXT NOT NULL,
        requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT classification_requests_pkey PRIMARY KEY (track_id, file_id)
    )
    """,
)


def upgrade() -> None:
    for statement in PLATFORM_DDL + SERVICE_DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS classification_requests")
    op.execute("DROP TABLE IF EXISTS genre_classifications")
