"""The backfill, assembled: its store on the given engine and its outcome listener."""

from __future__ import annotations

import functools

from sqlalchemy.ext.asyncio import AsyncEngine

from genres.backfill.entry import run_backfill as run_with
from genres.backfill.outcomes import OutcomeListener
from genres.backfill.rule import BackfillOptions, BackfillReport, Progress, no_progress
from genres.backfill.store import SqlBackfillStore
from genres.config import Settings
from genres.kafka.producer import Publisher

__all__ = ["run_backfill"]


async def run_backfill(
    settings: Settings,
    engine: AsyncEngine,
    publisher: Publisher | None,
    options: BackfillOptions,
    *,
    wait: bool,
    timeout: float,
    progress: Progress = no_progress,
) -> BackfillReport:
    """``genres.backfill.entry.run_backfill`` over PostgreSQL through ``engine``, counting
    outcomes (with ``wait``) on an :class:`~genres.backfill.outcomes.OutcomeListener`."""
    return await run_with(
        settings,
        SqlBackfillStore(engine),
        publisher,
        options,
        listener=functools.partial(OutcomeListener, settings),
        wait=wait,
        timeout=timeout,
        progress=progress,
    )
