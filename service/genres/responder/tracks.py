"""What the responder reads about a track, and the on-demand markers (``SqlMarkers``).

Each function is one SQL statement in autocommit mode: no ``BEGIN``/``ROLLBACK`` around it.
On an engine without pre-ping (the composition root's, which the responder shares, or one from
:func:`create_read_engine`) a cached answer therefore costs exactly one database round trip;
``create_engine``'s default pings every connection it checks out (``BEGIN; ;ROLLBACK`` with
asyncpg: three more round trips), which is right for rare writes but costs the hot read path
dearly. Without the ping, a connection the server dropped fails once: :func:`track_view` then
retries once on a fresh connection.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Boolean, String, delete, exists, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from genres.database.engine import create_engine
from genres.database.schema import (
    classification_requests,
    genre_classifications,
    tags,
    track_tags,
    tracks,
)
from genres.responder.rule import TrackView
from genres_contracts import Prediction

__all__ = [
    "SqlMarkers",
    "TrackView",
    "create_read_engine",
    "track_view",
]

log = logging.getLogger(__name__)


def _predictions(value: Any) -> tuple[Prediction, ...] | None:
    """The stored predictions, skipping malformed entries; ``None`` when there is no list."""
    if isinstance(value, str | bytes):  # a driver without a JSONB codec returns text
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    kept: list[Prediction] = []
    for item in value:
        try:
            kept.append(Prediction.model_validate(item))
        except ValidationError:
            continue
    if len(kept) != len(value):
        log.warning("skipped malformed stored predictions", extra={"kept": len(kept)})
    return tuple(kept)


_TAG_NAMES = (
    select(func.array_agg(tags.c.name))
    .select_from(track_tags.join(tags, tags.c.id == track_tags.c.tag_id))
    .where(track_tags.c.track_id == tracks.c.id)
    .scalar_subquery()
)

_TRACK_VIEW = select(
    tracks.c.file_id,
    tracks.c.audio_url,
    tracks.c.extra["genre_predictions"].label("predictions"),
    tracks.c.extra["genre_predictions_file_id"].astext.label("predictions_file_id"),
    func.coalesce(_TAG_NAMES, literal([], ARRAY(String))).label("tag_names"),
    exists()
    .where(
        genre_classifications.c.track_id == tracks.c.id,
        genre_classifications.c.file_id == tracks.c.file_id,
        genre_classifications.c.status == "failed",
        # the classifier's own claim rule: a failure without the flag counts as retryable
        ~func.coalesce(genre_classifications.c.error["retryable"].astext.cast(Boolean), True),
    )
    .label("failed"),
)


async def track_view(
    conn_or_engine: AsyncConnection | AsyncEngine, track_id: int
) -> TrackView | None:
    """The track's file, audio URL, stored predictions and tag names; ``None`` when absent.

    One statement: the tag names come from a correlated ``array_agg`` sub-select.
    """
    statement = _TRACK_VIEW.where(tracks.c.id == track_id)
    if isinstance(conn_or_engine, AsyncEngine):
        for attempt in (1, 2):
            try:
                async with conn_or_engine.connect() as connection:
                    connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    row = (await connection.execute(statement)).first()
                break
            except DBAPIError as exc:
                # a connection the server closed is invalidated (with the whole pool's
                # older ones); try once more on a fresh one
                if attempt == 2 or not exc.connection_invalidated:
                    raise
    else:
        row = (await conn_or_engine.execute(statement)).first()
    if row is None:
        return None
    return TrackView(
        track_id=track_id,
        file_id=row.file_id,
        audio_url=row.audio_url,
        predictions=_predictions(row.predictions),
        predictions_file_id=row.predictions_file_id,
        tag_names=tuple(row.tag_names or ()),
        failed=bool(row.failed),
    )


class SqlMarkers:
    """The ``Markers`` port on ``classification_requests``.

    ``claim`` is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE requested_at <
    stale_before``: the row lock makes a concurrent claimer re-check the ``WHERE`` against
    the winner's fresh ``requested_at`` and get no row, so exactly one caller wins. The
    times are the rule's (``SingleFlight``'s clock), not the server's.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(
        self, track_id: int, file_id: str, *, at: datetime, stale_before: datetime
    ) -> bool:
        table = classification_requests
        statement = (
            insert(table)
            .values(track_id=track_id, file_id=file_id, requested_at=at)
            .on_conflict_do_update(
                index_elements=[table.c.track_id, table.c.file_id],
                set_={"requested_at": at},
                where=table.c.requested_at < stale_before,
            )
            .returning(table.c.track_id)
        )
        async with self._engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            row = (await connection.execute(statement)).first()
        return row is not None

    async def release(self, track_id: int, file_id: str) -> None:
        table = classification_requests
        async with self._engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(
                delete(table).where(table.c.track_id == track_id, table.c.file_id == file_id)
            )


def create_read_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    statement_cache_size: int = 256,
    application_name: str = "genres-responder",
) -> AsyncEngine:
    """An engine for the responder's reads: autocommit, and no pre-ping at checkout (its
    reads retry once on a dropped connection). ``pool_size=0``: a connection per use (tests).
    """
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        statement_cache_size=statement_cache_size,
        application_name=application_name,
        pre_ping=False,
        autocommit=True,
    )
