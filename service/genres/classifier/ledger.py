"""The classification ledger: how the classifier knows a (track, file, model) was classified.

One row per (track_id, file_id, model_name, model_version) in ``genre_classifications``.
The classifier claims a row before it pays for a classification and records the outcome
before it publishes the event, so a redelivered or duplicate event finds the outcome and
re-publishes it instead of paying again. Whether a claim is granted is the rule's
(``classifier.rule.decide_claim``); the ledger loads the row, locked, and stores the answer.

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

from genres.classifier.rule import Claimed, LedgerEntry, Recorded, decide_claim
from genres.database.batching import Batcher
from genres.database.engine import connect_pool
from genres_contracts import (
    CascadeRoute,
    ClassificationFailed,
    ErrorInfo,
    GenresClassified,
    ModelRef,
    Prediction,
)

_KEY = "track_id = $1 AND file_id = $2 AND model_name = $3 AND model_version = $4"

_UNNEST_KEYS = "unnest($1::bigint[], $2::text[], $3::text[], $4::text[])"
_SAME_KEY = """(g.track_id, g.file_id, g.model_name, g.model_version)
        = (u.track_id, u.file_id, u.model_name, u.model_version)"""

# A claim of a key never seen is the common case and needs no decision: one statement.
# The keys that come back are claimed; the others have a row, which the rule must judge.
_INSERT_NEW = """
    INSERT INTO genre_classifications
        (track_id, file_id, model_name, model_version, status, source_event_id, attempts)
    SELECT track_id, file_id, model_name, model_version, 'pending', source_event_id, 0
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS u(track_id, file_id, model_name, model_version, source_event_id)
    ON CONFLICT (track_id, file_id, model_name, model_version) DO NOTHING
    RETURNING track_id, file_id, model_name, model_version
"""

# The rows the rule judges, locked (in key order: two claimers never deadlock) until the
# claims it grants are written in the same transaction.
_LOAD_FOR_CLAIM = f"""
    SELECT g.track_id, g.file_id, g.model_name, g.model_version, g.status, g.job_id,
           g.event_id, g.predictions, g.error, g.attempts, g.updated_at, g.answered
    FROM genre_classifications AS g
    JOIN {_UNNEST_KEYS} AS u(track_id, file_id, model_name, model_version) ON {_SAME_KEY}
    ORDER BY g.track_id, g.file_id, g.model_name, g.model_version
    FOR UPDATE OF g
"""

_TAKE = f"""
    UPDATE genre_classifications AS g
    SET status = 'pending', source_event_id = u.source_event_id, job_id = u.job_id,
        predictions = NULL, error = NULL, event_id = NULL, answered = NULL, updated_at = now()
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
        AS u(track_id, file_id, model_name, model_version, source_event_id, job_id)
    WHERE {_SAME_KEY}
"""

_STARTED_MANY = f"""
    UPDATE genre_classifications AS g SET job_id = u.job_id
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS u(track_id, file_id, model_name, model_version, job_id)
    WHERE {_SAME_KEY}
      AND g.status = 'pending'
"""

_SUCCEEDED_MANY = f"""
    UPDATE genre_classifications AS g
    SET status = 'succeeded', predictions = u.predictions::jsonb, event_id = u.event_id,
        attempts = g.attempts + u.attempts, error = NULL, updated_at = u.classified_at,
        answered = u.answered::jsonb
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::int[], $8::timestamptz[], $9::text[])
        AS u(track_id, file_id, model_name, model_version, predictions, event_id, attempts,
             classified_at, answered)
    WHERE {_SAME_KEY}
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
        """Claim the classification, or get the outcome on record (``decide_claim`` judges)."""
        return await self._claims.submit(
            _ClaimItem(_key(track_id, file_id, model), source_event_id, force)
        )

    async def _claim_many(self, items: Sequence[_ClaimItem]) -> list[Claimed | Recorded]:
        # A key with no row: decide_claim(None) grants a new claim, forced or not, which is
        # what inserting the pending row stores.
        inserted = await self._pool.fetch(
            _INSERT_NEW, *_columns(items), [item.source_event_id for item in items]
        )
        decisions: dict[Key, Claimed | Recorded] = {
            _row_key(row): decide_claim(None, force=False) for row in inserted
        }
        judged = [item for item in items if item.key not in decisions]
        if judged:
            decisions.update(await self._judge(judged))
        return [decisions[item.key] for item in items]

    async def _judge(self, items: Sequence[_ClaimItem]) -> dict[Key, Claimed | Recorded]:
        """Load the rows, let the rule decide, write the claims it grants: one transaction."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(_LOAD_FOR_CLAIM, *_columns(items))
            entries = {_row_key(row): _entry(row) for row in rows}
            decisions = {
                item.key: decide_claim(entries.get(item.key), force=item.force) for item in items
            }
            taken = [item for item in items if isinstance(decisions[item.key], Claimed)]
            if taken:
                await connection.execute(
                    _TAKE,
                    *_columns(taken),
                    [item.source_event_id for item in taken],
                    [_resume(decisions[item.key]) for item in taken],
                )
        return decisions

    async def started(self, track_id: int, file_id: str, model: ModelRef, job_id: str) -> None:
        """The backend's job for this classification exists (a redelivery resumes it)."""
        await self._starts.submit(_StartItem(_key(track_id, file_id, model), job_id))

    async def _started_many(self, items: Sequence[_StartItem]) -> list[None]:
        await self._pool.execute(_STARTED_MANY, *_columns(items), [i.job_id for i in items])
        return [None] * len(items)

    async def succeeded(self, model: ModelRef, event: GenresClassified, *, attempts: int) -> None:
        await self._successes.submit(
            _SuccessItem(
                _key(event.track_id, event.file_id, model),
                json.dumps([p.model_dump() for p in event.predictions]),
                event.event_id,
                attempts,
                event.classified_at,
                _answered(model, event),
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
            [item.answered for item in items],
        )
        return [None] * len(items)

    async def failed(self, model: ModelRef, event: ClassificationFailed) -> None:
        await self._pool.execute(
            _FAILED,
            *_key(event.track_id, event.file_id, model),
            json.dumps({**event.error.model_dump(), "retryable": event.retryable}),
            event.event_id,
            event.attempts,
        )


Key = tuple[int, str, str, str]


@dataclass(frozen=True, slots=True)
class _ClaimItem:
    key: Key
    source_event_id: str
    force: bool


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
    answered: str | None


def _answered(model: ModelRef, event: GenresClassified) -> str | None:
    """The ``answered`` column: the answering model and route, when not the key's model."""
    if event.model == model and event.cascade is None:
        return None
    answered: dict[str, Any] = {"model": event.model.model_dump()}
    if event.cascade is not None:
        answered["cascade"] = event.cascade.model_dump()
    return json.dumps(answered)


def _item_key(item: _ClaimItem | _StartItem | _SuccessItem) -> Key:
    return item.key


def _columns(items: Sequence[_ClaimItem | _StartItem | _SuccessItem]) -> list[list[Any]]:
    """The key's four columns as four arrays."""
    return [list(column) for column in zip(*(item.key for item in items), strict=True)]


def _row_key(row: asyncpg.Record) -> Key:
    return (row["track_id"], row["file_id"], row["model_name"], row["model_version"])


def _resume(decision: Claimed | Recorded) -> str | None:
    return decision.resume if isinstance(decision, Claimed) else None


def _entry(row: asyncpg.Record) -> LedgerEntry:
    error: dict[str, Any] | None = json.loads(row["error"]) if row["error"] else None
    predictions = json.loads(row["predictions"]) if row["predictions"] else []
    answered: dict[str, Any] = json.loads(row["answered"]) if row["answered"] else {}
    cascade = answered.get("cascade")
    return LedgerEntry(
        status=row["status"],
        job_id=row["job_id"],
        event_id=row["event_id"],
        predictions=tuple(Prediction.model_validate(p) for p in predictions),
        error=ErrorInfo.model_validate(error) if error else None,
        retryable=bool(error.get("retryable", True)) if error else True,
        attempts=row["attempts"],
        updated_at=row["updated_at"],
        answered_by=ModelRef.model_validate(answered["model"]) if "model" in answered else None,
        cascade=CascadeRoute.model_validate(cascade) if cascade else None,
    )


def _key(track_id: int, file_id: str, model: ModelRef) -> Key:
    return (track_id, file_id, model.name, model.version)
