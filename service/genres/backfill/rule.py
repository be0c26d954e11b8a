"""Backfill: ask for the classification of every track that lacks current predictions.

Which tracks is decided here (``eligible``), on what the store reads of every track, with
the one definition of "current predictions" (``genres.stored``) the responder uses too.
With a ``model`` (``genres backfill --other-model``), tracks whose current predictions
another model or version made (or an unknown one) are eligible as well.

Running it twice is safe: the classifier recognises a (track, file, model) it has already
classified, so a second run costs a lookup per track, not a classification.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError

from genres.stored import Configured, StoredPredictions, needs_classification
from genres_contracts import ClassificationReason, ClassificationRequested

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillTrack:
    track_id: int
    file_id: str
    audio_url: str


@dataclass(frozen=True, slots=True)
class TrackRow:
    """A track as the backfill reads it."""

    track_id: int
    file_id: str | None
    audio_url: str | None
    stored: StoredPredictions


class BackfillStore(Protocol):
    def tracks(self) -> AsyncIterator[Sequence[TrackRow]]:
        """Every track, in pages ordered by id (a caller may stop reading at any page)."""
        ...


def eligible(row: TrackRow, *, model: Configured | None = None) -> bool:
    """A track with a file and audio to fetch that needs classifying: no current predictions,
    or, given ``model``, current ones made by another model or version."""
    return bool(row.file_id and row.audio_url) and needs_classification(row.stored, model=model)


async def selection(
    store: BackfillStore, *, model: Configured | None, limit: int | None
) -> AsyncIterator[list[BackfillTrack]]:
    """The eligible tracks in pages, ordered by id, at most ``limit`` in all."""
    remaining = limit
    async for rows in store.tracks():
        page = [
            BackfillTrack(row.track_id, row.file_id or "", row.audio_url or "")
            for row in rows
            if eligible(row, model=model)
        ]
        if remaining is not None:
            page = page[:remaining]
            remaining -= len(page)
        if page:
            yield page
        if remaining == 0:
            return


async def count(store: BackfillStore, *, model: Configured | None, limit: int | None) -> int:
    """How many tracks are eligible (at most ``limit``): a reading pass of its own."""
    return sum([len(page) async for page in selection(store, model=model, limit=limit)])


Publish = Callable[[ClassificationRequested], Awaitable[None]]
Progress = Callable[[int, int], None]
"""Called with (tracks handled so far, tracks eligible) after each one."""


@dataclass
class BackfillReport:
    eligible: int = 0
    published: int = 0
    skipped: int = 0
    """Tracks whose row cannot make a valid request (e.g. an audio_url that is not http(s))."""
    dry_run: bool = False
    tracks: list[BackfillTrack] = field(default_factory=list)
    """The eligible tracks, in a dry run only."""
    event_ids: list[str] = field(default_factory=list)
    """The ``event_id`` of every published request (the outcomes carry it as source)."""
    classified: int | None = None
    failed: int | None = None
    timed_out: int | None = None
    """Set when the caller waited for outcomes."""
    failures: list[FailedTrack] = field(default_factory=list)
    """The tracks whose request failed, when the caller waited for outcomes."""


@dataclass(frozen=True)
class FailedTrack:
    """A track whose classification failed: the failure's kind and message, for people."""

    track_id: int
    kind: str
    message: str


def request_for(track: BackfillTrack) -> ClassificationRequested:
    """A new request for the track; raises ``ValidationError`` when the row cannot make one."""
    return ClassificationRequested.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "track_id": track.track_id,
            "file_id": track.file_id,
            "audio_url": track.audio_url,
            "reason": ClassificationReason.BACKFILL,
        }
    )


def no_progress(done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class BackfillOptions:
    """What a backfill selects and how it publishes, as ``genres backfill`` was asked."""

    limit: int | None = None
    """At most this many tracks."""
    concurrency: int = 10
    """Publishes in flight."""
    dry_run: bool = False
    """List the tracks, publish nothing."""
    model: Configured | None = None
    """Also the tracks whose current predictions another model made (``eligible``); a
    cascade's configured models are its head's and Replicate's."""


async def backfill(
    *,
    tracks: BackfillStore,
    publish: Publish,
    options: BackfillOptions,
    progress: Progress = no_progress,
) -> BackfillReport:
    """Publish one ``ClassificationRequested(reason=backfill)`` per eligible track.

    At most ``options.concurrency`` publishes are in flight; the first publish error stops
    the run (the tracks not yet published are simply picked up by the next run).
    """
    if options.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    total = await count(tracks, model=options.model, limit=options.limit)
    report = BackfillReport(eligible=total, dry_run=options.dry_run)
    progress(0, total)
    done = 0
    if options.dry_run:
        async for page in selection(tracks, model=options.model, limit=options.limit):
            report.tracks.extend(page)
            done += len(page)
            progress(done, total)
        report.eligible = len(report.tracks)
        return report

    slots = asyncio.Semaphore(options.concurrency)
    seen = 0

    async def send(request: ClassificationRequested) -> None:
        nonlocal done
        try:
            await publish(request)
        finally:
            slots.release()
        report.published += 1
        done += 1
        progress(done, total)

    try:
        async with asyncio.TaskGroup() as group:
            async for page in selection(tracks, model=options.model, limit=options.limit):
                for track in page:
                    seen += 1
                    try:
                        request = request_for(track)
                    except ValidationError:
                        report.skipped += 1
                        done += 1
                        progress(done, total)
                        log.warning(
                            "skipped a track whose row cannot make a request",
                            extra={"track_id": track.track_id},
                        )
                        continue
                    await slots.acquire()
                    # Recorded before sending so that an outcome can never beat its id home.
                    report.event_ids.append(request.event_id or "")
                    group.create_task(send(request))
    except ExceptionGroup as failed:
        # The first publish error stops the run: the caller sees it, not asyncio's group.
        raise failed.exceptions[0] from None
    report.eligible = seen
    log.info(
        "backfill published",
        extra={"published": report.published, "skipped": report.skipped},
    )
    return report
