"""The tracks a backfill asks about: those with audio but no predictions for their current file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.backfill.rule import BackfillTrack

__all__ = ["PAGE_SIZE", "SqlBackfillStore"]

PAGE_SIZE = 1000

ELIGIBLE = """
    audio_url IS NOT NULL AND audio_url <> ''
    AND file_id IS NOT NULL AND file_id <> ''
    AND (
        extra->'genre_predictions' IS NULL
        OR extra->>'genre_predictions_file_id' IS DISTINCT FROM file_id
    )
"""

# Keyset pages: each page starts after the last id seen, so a long run never re-reads or
# skips rows the way OFFSET paging would while the projector updates the table.
PAGE = text(
    f"""
SELECT id, file_id, audio_url FROM tracks
WHERE id > :after AND {ELIGIBLE}
ORDER BY id
LIMIT :page
"""
)

COUNT = text(
    f"""
SELECT count(*) FROM (SELECT 1 FROM tracks WHERE {ELIGIBLE} LIMIT :limit) AS eligible
"""
)


class SqlBackfillStore:
    def __init__(self, engine: AsyncEngine, *, page_size: int = PAGE_SIZE) -> None:
        self._engine = engine
        self._page_size = page_size

    async def count(self, *, limit: int | None) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(COUNT, {"limit": limit})
        return int(value or 0)

    async def eligible(self, *, limit: int | None) -> AsyncIterator[Sequence[BackfillTrack]]:
        after = -(2**63)
        remaining = limit
        while remaining is None or remaining > 0:
            size = self._page_size if remaining is None else min(self._page_size, remaining)
            async with self._engine.connect() as connection:
                rows = (await connection.execute(PAGE, {"after": after, "page": size})).all()
            if not rows:
                return
            page = [BackfillTrack(int(r.id), str(r.file_id), str(r.audio_url)) for r in rows]
            yield page
            after = page[-1].track_id
            if remaining is not None:
                remaining -= len(page)
            if len(rows) < size:
                return
