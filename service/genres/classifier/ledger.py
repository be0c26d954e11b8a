"""The classification ledger: how the classifier knows a (track, file, model) was classified.

One row per (track_id, file_id, model_name, model_version) in ``genre_classifications``.
The classifier claims a row before it pays for a classification and records the outcome
before it publishes the event, so a redelivered or duplicate event finds the outcome and
re-publishes it instead of paying again.

Three statements per classification sit on the classifier's hot path, so the ledger talks
to asyncpg directly (a pool of its own) rather than through SQLAlchemy (measured: half the
CPU), and concurrent calls of the same step run as one statement over arrays
(``database/batching.py``; measured in ``bench pipeline``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from genres.classifier.rule import Claimed, Recorded
from genres.database.batching import Batcher
from genres.database.engine import connect_pool
from genres_contracts import ErrorInfo, ModelRef, Prediction

_KEY = "track_id = $1 AND file_id = $2 AND model_name = $3 AND model_version = $4"

# One round trip: the claim and, when it is refused, the outcome on record. The SELECT sees
# the snapshot from before the INSERT, which is exactly the row that refused the claim.
_CLAIM = """
    WITH claimed AS (
        INSERT INTO genre_classifications AS g
            (track_id, file_id, model_name, model_version, status, source_event_id, attempts)
        VALUES ($1, $2, $3, $4, 'pending', $5, 0)
        ON CONFLICT (track_id, file_id, model_name, model_version) DO UPDATE
            SET status = 'pending', source_event_id = EXCLUDED.source_event_id,
                predictions = NULL, error = NULL, event_id = NULL, updated_at = now(),
                -- a job an interrupted attempt started is resumed, unless forced anew
                job_id = CASE WHEN g.status = 'pending' AND NOT $6::boolean
                              THEN g.job_id END
            WHERE $6::boolean
               OR g.status = 'pending'
               OR (g.status = 'failed' AND coalesce((g.error ->> 'retryable')::boolean, true))
        RETURNING true
    )
    SELECT EXISTS (SELECT 1 FROM claimed) AS claimed,
           r.status, r.predictions, r.event_id, r.error, r.attempts, r.updated_at, r.job_id
    FROM (SELECT 1) AS one
    LEFT JOIN genre_classifications AS r
      ON r.track_id = $1 AND r.file_id = $2 AND r.model_name = $3 AND r.model_version = $4
"""

# The same claim for many keys at once (never forced: a forced claim runs alone, above).
# Rows come back in input order; `r` is the snapshot from before the INSERT, as above.
_CLAIM_MANY = """
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
            WITH ORDINALITY AS u(track_id, file_id, model_name, model_version, source_event_id, n)
    ),
    claimed AS (
        INSERT INTO genre_classifications AS g
            (track_id, file_id, model_name, model_version, status, source_event_id, attempts)
        SELECT track_id, file_id, model_name, model_version, 'pending', source_event_id, 0
        FROM input
        ON CONFLICT (track_id, file_id, model_name, model_version) DO UPDATE
            SET status = 'pending', source_event_id = EXCLUDED.source_event_id,
                predictions = NULL, error = NULL, event_id = NULL, updated_at = now(),
                job_id = CASE WHEN g.status = 'pending' THEN g.job_id END
            WHERE g.status = 'pending'
               OR (g.status = 'failed' AND coalesce((g.error ->> 'retryable')::boolean, true))
        RETURNING g.track_id, g.file_id, g.model_name, g.model_version
    )
    SELECT c.track_id IS NOT NULL AS claimed,
           r.status, r.predictions, r.event_id, r.error, r.attempts, r.updated_at, r.job_id
    FROM input AS i
    LEFT JOIN claimed AS c
      ON (c.track_id, c.file_id, c.model_name, c.model_version)
       = (i.track_id, i.file_id, i.model_name, i.model_version)
    LEFT JOIN genre_classifications AS r
      ON (r.track_id, r.file_id, r.model_name, r.model_version)
       = (i.track_id, i.file_id, i.model_name, i.model_version)
    ORDER BY i.n
"""

_STARTED_MANY = """
    UPDATE genre_classifications AS g SET job_id = u.job_id
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS u(track_id, file_id, model_name, model_version, job_id)
    WHERE (g.track_id, g.file_id, g.model_name, g.model_version)
        = (u.track_id, u.file_id, u.model_name, u.model_version)
      AND g.status = 'pending'
"""

_SUCCEEDED_MANY = """
    UPDATE genre_classifications AS g
    SET status = 'succeeded', predictions = u.predictions::jsonb, event_id = u.event_id,
        attempts = g.attempts + u.attempts, error = NULL, updated_at = u.classified_at
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::int[], $8::timestamptz[])
        AS u(track_id, file_id, model_name, model_version, predictions, event_id, attempts,
             classified_at)
    WHERE (g.track_id, g.file_id, g.model_name, g.model_version)
        = (u.track_id, u.file_id, u.model_name, u.model_version)
"""

_FAILED = f"""
    UPDATE genre_classifications
    SET status = 'failed', error = $5::jsonb, event_id = $6,
        attempts = attempts + $7, predictions = NULL, updated_at = now()
    WHERE {_KEY}
"""


class PostgresLedger:
    """``genre_classifications`` on PostgreSQL, through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._claims: Batcher[_ClaimItem, Claimed | Recorded] = Batcher(
            self._claim_many, key=_item_key
        )
        self._starts: Batcher[_StartItem, None] = Batcher(self._started_many, key=_item_key)
        self._successes: Batcher[_SuccessItem, None] = Batcher(self._succeeded_many, key=_item_key)

    @classmethod
    async def connect(cls, database_url: str, *, size: int = 10) -> PostgresLedger:
        """A pool on ``DATABASE_URL`` (any PostgreSQL scheme; SQLAlchemy reads the URL)."""
        return cls(await connect_pool(database_url, size=size))

    async def close(self) -> None:
        for batcher in (self._claims, self._starts, self._successes):
            await batcher.close()
        await self._pool.close()

    async def claim(
        self, track_id: int, file_id: str, model: ModelRef, *, source_event_id: str, force: bool
    ) -> Claimed | Recorded:
        """Claim the classification, or get the outcome on record."""
        key = _key(track_id, file_id, model)
        if not force:
            return await self._claims.submit(_ClaimItem(key, source_event_id))
        row = await self._pool.fetchrow(_CLAIM, *key, source_event_id, force)
        assert row is not None  # the LEFT JOIN from one row always yields one
        return _claim_result(row, force=force)

    async def _claim_many(self, items: Sequence[_ClaimItem]) -> list[Claimed | Recorded]:
        rows = await self._pool.fetch(
            _CLAIM_MANY, *_columns(items), [item.source_event_id for item in items]
        )
        return [_claim_result(row, force=False) for row in rows]

    async def started(self, track_id: int, file_id: str, model: ModelRef, job_id: str) -> None:
        """The backend's job for this classification exists (a redelivery resumes it)."""
        await self._starts.submit(_StartItem(_key(track_id, file_id, model), job_id))

    async def _started_many(self, items: Sequence[_StartItem]) -> list[None]:
        await self._pool.execute(_STARTED_MANY, *_columns(items), [i.job_id for i in items])
        return [None] * len(items)

    async def succeeded(
        self,
        track_id: int,
        file_id: str,
        model: ModelRef,
        *,
        event_id: str,
        predictions: tuple[Prediction, ...],
        attempts: int,
        classified_at: datetime,
    ) -> None:
        await self._successes.submit(
            _SuccessItem(
                _key(track_id, file_id, model),
                json.dumps([p.model_dump() for p in predictions]),
                event_id,
                attempts,
                classified_at,
            )
        )

    async def _succeeded_many(self, items: Sequence[_SuccessItem]) -> list[None]:
        await self._pool.execute(
            _SUCCEEDED_MANY,
            *_columns(items),
            [item.predictions for item in items],
            [item.event_id for item in items],
            [item.attempts for item in items],
            [item.classified_at for item in items],
        )
        return [None] * len(items)

    async def failed(
        self,
        track_id: int,
        file_id: str,
        model: ModelRef,
        *,
        event_id: str,
        error: ErrorInfo,
        retryable: bool,
        attempts: int,
    ) -> None:
        await self._pool.execute(
            _FAILED,
            *_key(track_id, file_id, model),
            json.dumps({**error.model_dump(), "retryable": retryable}),
            event_id,
            attempts,
        )


Key = tuple[int, str, str, str]


@dataclass(frozen=True, slots=True)
class _ClaimItem:
    key: Key
    source_event_id: str


@dataclass(frozen=True, slots=True)
class _StartItem:
    key: Key
    job_id: str


@dataclass(frozen=True, slots=True)
class _SuccessItem:
    key: Key
    predictions: str
    event_id: str
    attempts: int
    classified_at: datetime


def _item_key(item: _ClaimItem | _StartItem | _SuccessItem) -> Key:
    return item.key


def _columns(items: Sequence[_ClaimItem | _StartItem | _SuccessItem]) -> list[list[Any]]:
    """The key's four columns as four arrays."""
    return [list(column) for column in zip(*(item.key for item in items), strict=True)]


def _claim_result(row: asyncpg.Record, *, force: bool) -> Claimed | Recorded:
    if row["claimed"]:
        return Claimed(resume=row["job_id"] if row["status"] == "pending" and not force else None)
    error: dict[str, Any] | None = json.loads(row["error"]) if row["error"] else None
    predictions = json.loads(row["predictions"]) if row["predictions"] else []
    return Recorded(
        status=row["status"],
        event_id=row["event_id"],
        predictions=tuple(Prediction.model_validate(p) for p in predictions),
        error=ErrorInfo.model_validate(error) if error else None,
        retryable=bool(error.get("retryable", True)) if error else False,
        attempts=max(1, row["attempts"]),
        classified_at=row["updated_at"],
    )


def _key(track_id: int, file_id: str, model: ModelRef) -> Key:
    return (track_id, file_id, model.name, model.version)
