"""The projector's store on PostgreSQL: reads the batch's tracks, applies the rule's plan.

The decisions (stale guard, last wins, the auto-tag rule) are ``projector/rule.py``'s. This
adapter makes them safe to take in Python: ``tracks`` reads the batch's tracks ``FOR UPDATE``
(in id order, so two projectors never deadlock), so no platform write can replace a track's
file between the read and the write of its predictions. The write merges two keys into
``extra`` on the server (``extra || jsonb_build_object(...)``), so a concurrent writer of
another key is never overwritten, and records the predictions' model in ``projected_models``
(the service's table: the projector adds no key to ``extra``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from genres.projector.rule import TrackState, Write
from genres_contracts import Prediction

__all__ = ["SqlProjectionBatch", "SqlProjectionStore", "predictions_json"]

READ_TRACKS = text(
    """
SELECT t.id, t.file_id,
       CASE WHEN t.id = ANY(CAST(:tagged AS bigint[])) THEN ARRAY(
           SELECT tag.name FROM track_tags tt JOIN tags tag ON tag.id = tt.tag_id
           WHERE tt.track_id = t.id ORDER BY tag.id
       ) END AS tag_names
FROM tracks t
WHERE t.id = ANY(CAST(:ids AS bigint[]))
ORDER BY t.id
FOR UPDATE OF t
"""
)

# One statement: merge the predictions, record their model, drop the on-demand markers.
# The file guard is repeated in the WHERE clause although the rows are locked: cheap, and
# it keeps the statement safe on its own.
STORE = text(
    """
WITH w AS (
    SELECT *
    FROM unnest(
        CAST(:track_ids AS bigint[]),
        CAST(:file_ids AS text[]),
        CAST(:predictions AS text[]),
        CAST(:model_names AS text[]),
        CAST(:model_versions AS text[])
    ) AS w(track_id, file_id, predictions, model_name, model_version)
),
updated AS (
    UPDATE tracks AS t
    SET extra = COALESCE(t.extra, '{}'::jsonb) || jsonb_build_object(
        'genre_predictions', CAST(w.predictions AS jsonb),
        'genre_predictions_file_id', w.file_id
    )
    FROM w
    WHERE t.id = w.track_id AND t.file_id = w.file_id
    RETURNING t.id
),
models AS (
    INSERT INTO projected_models AS m (track_id, file_id, model_name, model_version)
    SELECT track_id, file_id, model_name, model_version FROM w
    ON CONFLICT (track_id) DO UPDATE
        SET file_id = EXCLUDED.file_id, model_name = EXCLUDED.model_name,
            model_version = EXCLUDED.model_version, projected_at = now()
),
cleared AS (
    DELETE FROM classification_requests r
    USING w
    WHERE r.track_id = w.track_id AND r.file_id = w.file_id
)
SELECT count(*) FROM updated
"""
)

# A tag is created only when no tag matches the name case-insensitively, and names that
# differ only in case (two tracks' candidates) make one tag, so the tag table never holds
# "Rock" and "rock" because of the projector. The spelling kept is the first in byte order.
CREATE_TAGS = text(
    """
INSERT INTO tags (name)
SELECT DISTINCT ON (lower(c.name)) c.name
FROM unnest(CAST(:names AS text[])) AS c(name)
WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE lower(t.name) = lower(c.name))
ORDER BY lower(c.name), c.name COLLATE "C"
ON CONFLICT (name) DO NOTHING
"""
)

# Link each (track, name) to the tag spelled exactly so, else the oldest one alike but for case.
LINK_TAGS = text(
    """
INSERT INTO track_tags (track_id, tag_id)
SELECT c.track_id, tag.id
FROM unnest(CAST(:track_ids AS bigint[]), CAST(:names AS text[])) AS c(track_id, name)
CROSS JOIN LATERAL (
    SELECT t.id FROM tags t
    WHERE lower(t.name) = lower(c.name)
    ORDER BY (t.name = c.name) DESC, t.id
    LIMIT 1
) AS tag
ORDER BY c.track_id, tag.id
ON CONFLICT DO NOTHING
"""
)


def predictions_json(predictions: Sequence[Prediction]) -> str:
    """The stored list: ``[{"name", "confidence"}]`` best first, nothing else."""
    return json.dumps(
        [{"name": p.name, "confidence": p.confidence} for p in predictions],
        separators=(",", ":"),
        ensure_ascii=False,
    )


class SqlProjectionBatch:
    """One transaction on a connection the caller began."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def tracks(
        self, track_ids: Collection[int], *, with_tags: Collection[int]
    ) -> Mapping[int, TrackState]:
        rows = await self._connection.execute(
            READ_TRACKS, {"ids": sorted(track_ids), "tagged": sorted(with_tags)}
        )
        return {int(row.id): TrackState(row.file_id, tuple(row.tag_names or ())) for row in rows}

    async def store(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        await self._connection.execute(
            STORE,
            {
                "track_ids": [w.track_id for w in writes],
                "file_ids": [w.file_id for w in writes],
                "predictions": [predictions_json(w.predictions) for w in writes],
                "model_names": [w.model.name for w in writes],
                "model_versions": [w.model.version for w in writes],
            },
        )

    async def add_tags(self, tags: Sequence[tuple[int, Sequence[str]]]) -> int:
        track_ids = [track_id for track_id, names in tags for _ in names]
        names = [name for _, names in tags for name in names]
        if not names:
            return 0
        await self._connection.execute(CREATE_TAGS, {"names": names})
        linked = await self._connection.execute(LINK_TAGS, {"track_ids": track_ids, "names": names})
        return max(linked.rowcount, 0)


class SqlProjectionStore:
    """A batch is one transaction of two statements (four with auto-tags)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[SqlProjectionBatch]:
        async with self._engine.begin() as connection:
            yield SqlProjectionBatch(connection)
