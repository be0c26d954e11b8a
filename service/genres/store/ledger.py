"""The classification ledger: how the classifier knows a (track, file, model) was classified.

One row per (track_id, file_id, model_name, model_version) in ``genre_classifications``.
The classifier claims a row before it pays for a classification and records the outcome
before it publishes the event, so a redelivered or duplicate event finds the outcome and
re-publishes it instead of paying again.

Two statements per classification sit on the classifier's hot path, so the ledger talks to
asyncpg directly (a pool of its own) rather than through SQLAlchemy: measured, that halves
the ledger's CPU per classification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from genres.store.engine import COMMAND_TIMEOUT_SECONDS, CONNECT_TIMEOUT_SECONDS
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

_STARTED = f"""
    UPDATE genre_classifications SET job_id = $5 WHERE {_KEY} AND status = 'pending'
"""

_SUCCEEDED = f"""
    UPDATE genre_classifications
    SET status = 'succeeded', predictions = $5::jsonb, event_id = $6,
        attempts = attempts + $7, error = NULL, updated_at = $8
    WHERE {_KEY}
"""

_FAILED = f"""
    UPDATE genre_classifications
    SET status = 'failed', error = $5::jsonb, event_id = $6,
        attempts = attempts + $7, predictions = NULL, updated_at = now()
    WHERE {_KEY}
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """The classification is ours to run; ``resume`` is a job an interrupted attempt began."""

    resume: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """An outcome already in the ledger."""

    status: str
    event_id: str
    predictions: tuple[Prediction, ...]
    error: ErrorInfo | None
    retryable: bool
    attempts: int
    classified_at: datetime


class Ledger:
    """``genre_classifications`` on PostgreSQL, through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, database_url: str, *, size: int = 10) -> Ledger:
        """A pool on ``DATABASE_URL`` (any PostgreSQL scheme; SQLAlchemy reads the URL)."""
        url = make_url(database_url).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(url)
        try:
            _, options = engine.dialect.create_connect_args(url)
        finally:
            await engine.dispose()
        options.pop("prepared_statement_cache_size", None)
        options.setdefault("timeout", CONNECT_TIMEOUT_SECONDS)
        options.setdefault("command_timeout", COMMAND_TIMEOUT_SECONDS)
        pool = await asyncpg.create_pool(min_size=1, max_size=size, reset=_keep, **options)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def claim(
        self, track_id: int, file_id: str, model: ModelRef, *, source_event_id: str, force: bool
    ) -> Claimed | Recorded:
        """Claim the classification, or get the outcome on record."""
        row = await self._pool.fetchrow(
            _CLAIM, *_key(track_id, file_id, model), source_event_id, force
        )
        assert row is not None  # the LEFT JOIN from one row always yields one
        if row["claimed"]:
            return Claimed(
                resume=row["job_id"] if row["status"] == "pending" and not force else None
            )
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

    async def started(self, track_id: int, file_id: str, model: ModelRef, job_id: str) -> None:
        """The backend's job for this classification exists (a redelivery resumes it)."""
        await self._pool.execute(_STARTED, *_key(track_id, file_id, model), job_id)

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
        await self._pool.execute(
            _SUCCEEDED,
            *_key(track_id, file_id, model),
            json.dumps([p.model_dump() for p in predictions]),
            event_id,
            attempts,
            classified_at,
        )

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


async def _keep(connection: asyncpg.Connection) -> None:
    """No reset on release: every statement stands alone and leaves no session state, and
    asyncpg's default reset is a round trip per statement."""


def _key(track_id: int, file_id: str, model: ModelRef) -> tuple[int, str, str, str]:
    return (track_id, file_id, model.name, model.version)
