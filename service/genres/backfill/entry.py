"""The backfill's entrypoint: tracks from the database, requests onto the bus, outcomes back."""

from __future__ import annotations

from collections.abc import Callable

from genres.backfill.outcomes import OutcomeListener
from genres.backfill.rule import (
    BackfillOptions,
    BackfillReport,
    BackfillStore,
    Progress,
    Publish,
    backfill,
    no_progress,
)
from genres.config import Settings
from genres.kafka.acls import topics_used
from genres.kafka.broker import ensure_topics
from genres.kafka.producer import Publisher, track_key
from genres_contracts import ClassificationRequested, topics

__all__ = ["run_backfill"]


async def run_backfill(
    settings: Settings,
    store: BackfillStore,
    publisher: Publisher | None,
    options: BackfillOptions,
    *,
    listener: Callable[[], OutcomeListener],
    wait: bool,
    timeout: float,
    progress: Progress = no_progress,
) -> BackfillReport:
    """Run a backfill over ``store`` with a started ``publisher`` (none for a dry run, which
    only reads the database); with ``wait``, count the outcomes too (on a ``listener()``).

    ``progress(done, total)`` is called as tracks are listed or published; when waiting, the
    report's ``classified`` / ``failed`` / ``timed_out`` are set after at most ``timeout``
    seconds of waiting. (Its parts are built by :mod:`genres.backfill.assembly`.)
    """

    async def run(publish: Publish) -> BackfillReport:
        return await backfill(tracks=store, publish=publish, options=options, progress=progress)

    if options.dry_run:
        return await run(_never)
    if publisher is None:
        raise ValueError("a backfill that publishes needs a publisher")
    await ensure_topics(settings, topics_used(settings, ["backfill"]))
    if not wait:
        return await run(_publisher(publisher, None))
    async with listener() as outcomes:
        report = await run(_publisher(publisher, outcomes))
        counts = await outcomes.wait(timeout)
    report.classified = counts.classified
    report.failed = counts.failed
    report.timed_out = counts.timed_out
    report.failures = counts.failures
    return report


async def _never(request: ClassificationRequested) -> None:
    raise AssertionError("a dry run publishes nothing")


def _publisher(publisher: Publisher, listener: OutcomeListener | None) -> _Publish:
    return _Publish(publisher, listener)


class _Publish:
    def __init__(self, publisher: Publisher, listener: OutcomeListener | None) -> None:
        self._publisher = publisher
        self._listener = listener

    async def __call__(self, request: ClassificationRequested) -> None:
        if self._listener is not None and request.event_id is not None:
            self._listener.expect([request.event_id])
        await self._publisher.publish(
            topics.CLASSIFICATION_REQUESTED, request, key=track_key(request.track_id)
        )
