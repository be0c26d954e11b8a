"""What a backfill reads of every track; which ones it asks about is ``backfill/rule.py``'s.

The store reads, the rule decides (``genres.stored``'s one definition of current
predictions): there is no second definition of eligibility in SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.backfill.rule import TrackRow
from genres.stored import StoredPredictions
from genres_contracts import ModelRef

__all__ = ["PAGE_SIZE", "SqlBackfillStore"]

PAGE_SIZE = 1000

# Keyset pages: each page starts after the last id seen, so a long run never re-reads or
# skips rows the way OFFSET paging would while the projector updates the table.
PAGE = text(
    """
SELECT t.id, t.file_id, t.audio_url,
       jsonb_typeof(t.extra->'genre_predictions') = 'array' AS present,
       t.extra->>'genre_predictions_file_id' AS predictions_file_id,
       m.model_name, m.model_version
FROM tracks t
LEFT JOIN projected_models m ON m.track_id = t.id
WHERE t.id > :after
ORDER BY t.id
LIMIT :page
"""
)


class SqlBackfillStore:
    def __init__(self, engine: AsyncEngine, *, page_size: int = PAGE_SIZE) -> None:
        self._engine = engine
        self._page_size = page_size

    async def tracks(self) -> AsyncIterator[Sequence[TrackRow]]:
        after = -(2**63)
        while True:
            async with self._engine.connect() as connection:
                rows = (
                    await connection.execute(PAGE, {"after": after, "page": self._page_size})
                ).all()
            if not rows:
                return
            yield [_row(r) for r in rows]
            after = int(rows[-1].id)
            if len(rows) < self._page_size:
                return


def _row(r: Row[Any]) -> TrackRow:
    model = ModelRef(name=r.model_name, version=r.model_version) if r.model_name else None
    return TrackRow(
        track_id=int(r.id),
        file_id=r.file_id,
        audio_url=r.audio_url,
        stored=StoredPredictions(
            file_id=r.file_id,
            present=bool(r.present),
            predictions_file_id=r.predictions_file_id,
            model=model,
        ),
    )
