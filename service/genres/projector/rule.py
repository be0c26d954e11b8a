"""The projector: stores each track's current genre predictions in ``tracks.extra``.

A plain async function over a ``ProjectionStore`` port; the bus entrypoint decides when to
acknowledge, and the store decides how the write is done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from genres_contracts import GenresClassified, Prediction

log = logging.getLogger(__name__)

AUTO_TAG_MAX_NEW = 5
AUTO_TAG_MAX_TOTAL = 10


@dataclass(frozen=True)
class ProjectionResult:
    """What one batch did, by track id (each list in the batch's order)."""

    written: list[tuple[int, str]] = field(default_factory=list)
    """(track_id, file_id) whose predictions were stored."""
    stale: list[tuple[int, str]] = field(default_factory=list)
    """(track_id, file_id) of events for a file that is no longer the track's current one."""
    missing: list[int] = field(default_factory=list)
    """Track ids that are not in the database."""
    superseded: int = 0
    """Events replaced by a later event for the same track in the same batch."""
    tags_added: int = 0


class ProjectionStore(Protocol):
    async def write(self, events: Sequence[GenresClassified]) -> ProjectionResult:
        """Store the events in one transaction; events are in offset order."""
        ...


@dataclass(frozen=True)
class ProjectionReport:
    events: int
    written: int
    stale: int
    missing: int
    superseded: int
    tags_added: int


def auto_tag_candidates(
    predictions: Sequence[Prediction], *, limit: int = AUTO_TAG_MAX_NEW
) -> list[str]:
    """The tag names an auto-tag upload may add, best first, before looking at the track.

    The cut at ``limit`` comes before the store skips tags the track already has: a replay
    then finds the same candidates, all present, and adds nothing (idempotent), where
    skipping first would let a replay reach further down the list.
    """
    if not predictions:
        return []
    ranked = sorted(predictions, key=lambda p: (-p.confidence, p.name))
    threshold = ranked[0].confidence / 2
    names: list[str] = []
    seen: set[str] = set()
    for prediction in ranked:
        if prediction.confidence < threshold or len(names) >= limit:
            break
        folded = prediction.name.casefold()
        if folded not in seen:
            seen.add(folded)
            names.append(prediction.name)
    return names


async def project(
    events: Sequence[GenresClassified], *, store: ProjectionStore
) -> ProjectionReport:
    """Write a batch of classifications; stale and unknown-track events are dropped, not retried.

    Database errors propagate: the caller retries the whole batch before acknowledging it.
    """
    if not events:
        return ProjectionReport(0, 0, 0, 0, 0, 0)
    result = await store.write(events)
    # The ids of the latest event per (track, file), for the log lines.
    ids = {
        (e.track_id, e.file_id): {"event_id": e.event_id, "source_event_id": e.source_event_id}
        for e in events
    }
    for track_id in result.missing:
        # Never retried: the platform may have deleted the track, or not created it yet;
        # the classification stays in the topic for a later replay.
        log.warning(
            "skipped predictions for a track that does not exist", extra={"track_id": track_id}
        )
    for track_id, file_id in result.stale:
        log.info(
            "dropped stale predictions",
            extra={"track_id": track_id, "file_id": file_id, **ids.get((track_id, file_id), {})},
        )
    for track_id, file_id in result.written:
        log.info(
            "stored genre predictions",
            extra={"track_id": track_id, "file_id": file_id, **ids.get((track_id, file_id), {})},
        )
    report = ProjectionReport(
        events=len(events),
        written=len(result.written),
        stale=len(result.stale),
        missing=len(result.missing),
        superseded=result.superseded,
        tags_added=result.tags_added,
    )
    log.info(
        "projected genre predictions",
        extra={
            "events": report.events,
            "written": report.written,
            "stale": report.stale,
            "missing": report.missing,
            "superseded": report.superseded,
            "tags_added": report.tags_added,
        },
    )
    return report
