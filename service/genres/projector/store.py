"""Writing ``GenresClassified`` events into ``tracks.extra``, a whole batch per statement.

The write merges two keys into ``extra`` on the server (``extra || jsonb_build_object(...)``),
so a concurrent writer of another key is never overwritten: there is no read-modify-write in
Python. The ``file_id`` guard is part of the UPDATE's WHERE clause, which PostgreSQL
re-checks on the latest row version when it had to wait for a row lock, so a track whose
audio was replaced meanwhile is not given the old file's predictions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from genres.projector.rule import (
    AUTO_TAG_MAX_TOTAL,
    ProjectionResult,
    auto_tag_candidates,
)
from genres_contracts import GenresClassified

__all__ = ["SqlProjectionStore", "predictions_json"]

# One statement: match the batch against the tracks, keep the last matching event per track,
# merge the predictions, drop the on-demand markers, and say what happened to every event.
# Every CTE sees the same snapshot, so `status` reads the tracks as they were before the
# update; `updated` says which rows the update (after its re-check) really changed.
PROJECT_BATCH = text(
    """
WITH input AS (
    SELECT *
    FROM unnest(
        CAST(:ords AS integer[]),
        CAST(:track_ids AS bigint[]),
        CAST(:file_ids AS text[]),
        CAST(:predictions AS text[])
    ) AS i(ord, track_id, file_id, predictions)
),
chosen AS (
    SELECT DISTINCT ON (i.track_id) i.ord, i.track_id, i.file_id, i.predictions
    FROM input i
    JOIN tracks t ON t.id = i.track_id AND t.file_id = i.file_id
    ORDER BY i.track_id, i.ord DESC
),
updated AS (
    UPDATE tracks AS t
    SET extra = COALESCE(t.extra, '{}'::jsonb) || jsonb_build_object(
        'genre_predictions', CAST(c.predictions AS jsonb),
        'genre_predictions_file_id', c.file_id
    )
    FROM chosen c
    WHERE t.id = c.track_id AND t.file_id = c.file_id
    RETURNING c.ord, c.track_id, c.file_id
),
cleared AS (
    DELETE FROM classification_requests r
    USING updated u
    WHERE r.track_id = u.track_id AND r.file_id = u.file_id
)
SELECT
    i.ord,
    CASE
        WHEN u.ord = i.ord THEN 'written'
        WHEN t.id IS NULL THEN 'missing'
        WHEN t.file_id IS DISTINCT FROM i.file_id THEN 'stale'
        -- matched when read, but the update's re-check refused it: replaced meanwhile
        WHEN u.ord IS NULL THEN 'stale'
        ELSE 'superseded'
    END AS status
FROM input i
LEFT JOIN tracks t ON t.id = i.track_id
LEFT JOIN updated u ON u.track_id = i.track_id
ORDER BY i.ord
"""
)

# Tags named like a candidate are created when no tag matches it case-insensitively.
CREATE_TAGS = text(
    """
INSERT INTO tags (name)
SELECT DISTINCT c.name
FROM unnest(CAST(:names AS text[])) AS c(name)
WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE lower(t.name) = lower(c.name))
ORDER BY c.name
ON CONFLICT (name) DO NOTHING
"""
)

# Link the candidates the track lacks (case-insensitively), best first, up to the track's
# room under the cap. A tag spelled differently only in case is reused rather than doubled.
LINK_TAGS = text(
    """
WITH cand AS (
    SELECT *
    FROM unnest(
        CAST(:track_ids AS bigint[]),
        CAST(:names AS text[]),
        CAST(:ranks AS integer[])
    ) AS c(track_id, name, rank)
),
fresh AS (
    SELECT c.track_id, c.rank, tag.id AS tag_id
    FROM cand c
    CROSS JOIN LATERAL (
        SELECT t.id FROM tags t
        WHERE lower(t.name) = lower(c.name)
        ORDER BY (t.name = c.name) DESC, t.id
        LIMIT 1
    ) AS tag
    WHERE NOT EXISTS (
        SELECT 1
        FROM track_tags tt
        JOIN tags have ON have.id = tt.tag_id
        WHERE tt.track_id = c.track_id AND lower(have.name) = lower(c.name)
    )
),
ranked AS (
    SELECT f.track_id, f.tag_id,
           row_number() OVER (PARTITION BY f.track_id ORDER BY f.rank) AS n,
           (SELECT count(*) FROM track_tags tt WHERE tt.track_id = f.track_id) AS have
    FROM fresh f
)
INSERT INTO track_tags (track_id, tag_id)
SELECT track_id, tag_id FROM ranked
WHERE n <= CAST(:max_total AS integer) - have
ORDER BY track_id, tag_id
ON CONFLICT DO NOTHING
"""
)


def predictions_json(event: GenresClassified) -> str:
    """The stored list: ``[{"name", "confidence"}]`` best first, nothing else."""
    return json.dumps(
        [{"name": p.name, "confidence": p.confidence} for p in event.predictions],
        separators=(",", ":"),
        ensure_ascii=False,
    )


class SqlProjectionStore:
    """The batched write: one statement for the predictions, two more only for auto-tags."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, events: Sequence[GenresClassified]) -> ProjectionResult:
        if not events:
            return ProjectionResult()
        async with self._engine.begin() as connection:
            return await write_batch(connection, events)


async def write_batch(
    connection: AsyncConnection, events: Sequence[GenresClassified]
) -> ProjectionResult:
    """The batched write inside the caller's transaction."""
    rows = await connection.execute(
        PROJECT_BATCH,
        {
            "ords": list(range(len(events))),
            "track_ids": [e.track_id for e in events],
            "file_ids": [e.file_id for e in events],
            "predictions": [predictions_json(e) for e in events],
        },
    )
    written: list[tuple[int, str]] = []
    stale: list[tuple[int, str]] = []
    missing: list[int] = []
    superseded = 0
    tagged: list[GenresClassified] = []
    for ord_, status in rows:
        event = events[ord_]
        if status == "written":
            written.append((event.track_id, event.file_id))
            if event.auto_tag:
                tagged.append(event)
        elif status == "stale":
            stale.append((event.track_id, event.file_id))
        elif status == "missing":
            missing.append(event.track_id)
        else:
            superseded += 1
    tags_added = await _auto_tag(connection, tagged) if tagged else 0
    return ProjectionResult(
        written=written,
        stale=stale,
        missing=missing,
        superseded=superseded,
        tags_added=tags_added,
    )


async def _auto_tag(connection: AsyncConnection, events: Sequence[GenresClassified]) -> int:
    track_ids: list[int] = []
    names: list[str] = []
    ranks: list[int] = []
    for event in events:
        for rank, name in enumerate(auto_tag_candidates(event.predictions)):
            track_ids.append(event.track_id)
            names.append(name)
            ranks.append(rank)
    if not names:
        return 0
    await connection.execute(CREATE_TAGS, {"names": names})
    linked = await connection.execute(
        LINK_TAGS,
        {"track_ids": track_ids, "names": names, "ranks": ranks, "max_total": AUTO_TAG_MAX_TOTAL},
    )
    return max(linked.rowcount, 0)
