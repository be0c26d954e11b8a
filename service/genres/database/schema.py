"""The tables the service reads and writes (SQLAlchemy Core).

``tracks``, ``tags`` and ``track_tags`` belong to the platform (docs/interface.md's minimal schema;
the migration creates them only when missing). ``genre_classifications``,
``classification_requests``, ``projected_models`` and ``replicate_pace`` are the service's own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_name)s_key",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

CLASSIFICATION_STATUSES = ("pending", "succeeded", "failed")

# -- the platform's tables ---------------------------------------------------------------------

tracks = Table(
    "tracks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("file_id", Text),
    Column("audio_url", Text),
    Column("extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)

tags = Table(
    "tags",
    metadata,
    # BIGSERIAL in the platform's DDL; Identity() would differ, so keep a sequence default.
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
)

track_tags = Table(
    "track_tags",
    metadata,
    Column("track_id", BigInteger, ForeignKey("tracks.id"), nullable=False),
    Column("tag_id", BigInteger, ForeignKey("tags.id"), nullable=False),
    PrimaryKeyConstraint("track_id", "tag_id"),
)

# -- the service's tables ----------------------------------------------------------------------


def _classification_key() -> list[Column[Any]]:
    """(track, file, model): what a classification is of."""
    return [
        Column("track_id", BigInteger, nullable=False),
        Column("file_id", Text, nullable=False),
        Column("model_name", Text, nullable=False),
        Column("model_version", Text, nullable=False),
    ]


genre_classifications = Table(
    "genre_classifications",
    metadata,
    # No foreign key to tracks: the classifier may see a track before the database has it.
    *_classification_key(),
    Column("status", Text, nullable=False),
    Column("predictions", JSONB, nullable=True),
    Column("event_id", Text, nullable=True),
    Column("source_event_id", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("error", JSONB, nullable=True),
    # The backend's id of the job in flight (a Replicate prediction): a redelivery resumes it.
    Column("job_id", Text, nullable=True),
    # The answering model and the cascade's route, when not the key's model (migration 0005).
    Column("answered", JSONB, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("track_id", "file_id", "model_name", "model_version"),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
)

classification_requests = Table(
    "classification_requests",
    metadata,
    Column("track_id", BigInteger, nullable=False),
    Column("file_id", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("track_id", "file_id"),
)

projected_models = Table(
    "projected_models",
    metadata,
    # The model of the predictions in tracks.extra (which the projector may not add keys to);
    # no foreign key to tracks, like the other service tables. One row per track.
    *_classification_key(),
    Column("projected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("track_id"),
)

replicate_pace = Table(
    "replicate_pace",
    metadata,
    # One row per Replicate account (a digest of its token): no creation before next_at.
    Column("account", Text, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account"),
)

PLATFORM_TABLES = ("tracks", "tags", "track_tags")
SERVICE_TABLES = (
    "genre_classifications",
    "classification_requests",
    "projected_models",
    "replicate_pace",
)
ALL_TABLES = PLATFORM_TABLES + SERVICE_TABLES

__all__ = [
    "ALL_TABLES",
    "CLASSIFICATION_STATUSES",
    "PLATFORM_TABLES",
    "SERVICE_TABLES",
    "classification_requests",
    "genre_classifications",
    "metadata",
    "projected_models",
    "replicate_pace",
    "tags",
    "track_tags",
    "tracks",
]
