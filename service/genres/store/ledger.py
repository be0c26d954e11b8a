"""The classification ledger: how the classifier knows a (track, file, model) was classified.

One row per (track_id, file_id, model_name, model_version) in ``genre_classifications``.
The classifier claims a row before it pays for a classification and records the outcome
before it publishes the event, so a redelivered or duplicate event finds the outcome and
re-publishes it instead of paying again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres_contracts import ErrorInfo, ModelRef, Prediction

# One round trip: the claim and, when it is refused, the outcome on record. The SELECT sees
# the snapshot from before the INSERT, which is exactly the row that refused the claim.
_CLAIM = text(
    """
    WITH claimed AS (
    INSERT INTO genre_classifications AS g
        (track_id, file_id, model_name, model_version, status, source_event_id, attempts)
    VALUES (:track_id, :file_id, :model_name, :model_version, 'pending', :source_event_id, 0)
    ON CONFLICT (track_id, file_id, model_name, model_version) DO UPDATE
        SET status = 'pending', source_event_id = EXCLUDED.source_event_id,
            predictions = NULL, error = NULL, event_id = NULL, updated_at = now()
        WHERE :force
           OR g.status = 'pending'
           OR (g.status = 'failed' AND coalesce((g.error ->> 'retryable')::boolean, true))
    RETURNING true
    )
    SELECT EXISTS (SELECT 1 FROM claimed) AS claimed,
           r.status, r.predictions, r.event_id, r.error, r.attempts, r.updated_at
    FROM (SELECT 1) AS one
    LEFT JOIN genre_classifications AS r
      ON r.track_id = :track_id AND r.file_id = :file_id
     AND r.model_name = :model_name AND r.model_version = :model_version
    """
)

_SUCCEEDED = text(
    """
    UPDATE genre_classifications
    SET status = 'succeeded', predictions = CAST(:predictions AS jsonb), event_id = :event_id,
        attempts = attempts + :attempts, error = NULL, updated_at = :classified_at
    WHERE track_id = :track_id AND file_id = :file_id
      AND model_name = :model_name AND model_version = :model_version
    """
)

_FAILED = text(
    """
    UPDATE genre_classifications
    SET status = 'failed', error = CAST(:error AS jsonb), event_id = :event_id,
        attempts = attempts + :attempts, predictions = NULL, updated_at = now()
    WHERE track_id = :track_id AND file_id = :file_id
      AND model_name = :model_name AND model_version = :model_version
    """
)


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
    """``genre_classifications`` on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Each statement stands alone: autocommit saves the BEGIN and COMMIT round trips.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def claim(
        self, track_id: int, file_id: str, model: ModelRef, *, source_event_id: str, force: bool
    ) -> Recorded | None:
        """Claim the classification; ``None`` means go ahead, else the outcome on record."""
        key = _key(track_id, file_id, model)
        async with self._engine.connect() as conn:
            result = await conn.execute(
                _CLAIM, {**key, "source_event_id": source_event_id, "force": force}
            )
            row = result.mappings().one()
        if row["claimed"]:
            return None
        error = row["error"] or None
        return Recorded(
            status=row["status"],
            event_id=row["event_id"],
            predictions=tuple(Prediction.model_validate(p) for p in row["predictions"] or ()),
            error=ErrorInfo.model_validate(error) if error else None,
            retryable=bool(error.get("retryable", True)) if error else False,
            attempts=max(1, row["attempts"]),
            classified_at=row["updated_at"],
        )

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
        async with self._engine.connect() as conn:
            await conn.execute(
                _SUCCEEDED,
                {
                    **_key(track_id, file_id, model),
                    "predictions": json.dumps([p.model_dump() for p in predictions]),
                    "event_id": event_id,
                    "attempts": attempts,
                    "classified_at": classified_at,
                },
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
        async with self._engine.connect() as conn:
            await conn.execute(
                _FAILED,
                {
                    **_key(track_id, file_id, model),
                    "error": json.dumps({**error.model_dump(), "retryable": retryable}),
                    "event_id": event_id,
                    "attempts": attempts,
                },
            )


def _key(track_id: int, file_id: str, model: ModelRef) -> dict[str, Any]:
    return {
        "track_id": track_id,
        "file_id": file_id,
        "model_name": model.name,
        "model_version": model.version,
    }
