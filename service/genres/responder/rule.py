"""The responder's decision: which tags to recommend for a track (no bus, no SQL here).

Semantics are the specification's ``GET /tracks/{id}/recommended-tags`` (docs/interface.md):

* a track that does not exist gets ``error.kind = not_found``;
* ``available: false`` when no classifier is configured (and nothing is requested);
* tags the track already has are left out (case-insensitive), at most ``limit``, best first,
  ``score`` = the model's confidence;
* stored predictions count only when they are current (``genres.stored.is_current``, the
  definition the backfill uses too: for the track's current ``file_id``; legacy rows without
  one only on a track without a file id either);
* without current predictions: a track with no ``file_id`` or no usable ``audio_url``, or
  whose current file's classification failed for good, gets empty tags with
  ``available: true`` (nothing can be classified); otherwise one
  ``ClassificationRequested(reason=on_demand)`` is published by whichever request wins the
  claim (``on_demand``), and the reply is ``pending: true`` at once (``wait_ms == 0``) or the
  outcome's predictions as soon as it is known within ``wait_ms`` (``pending: true`` when the
  wait ends first; empty tags when the classification failed).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import ValidationError

from genres.stored import StoredPredictions, is_current
from genres_contracts import (
    ClassificationFailed,
    ClassificationReason,
    ClassificationRequested,
    GenresClassified,
    Prediction,
    RecommendedTag,
    RecommendedTags,
    RecommendedTagsRequest,
    ReplyError,
)

log = logging.getLogger(__name__)

__all__ = [
    "Markers",
    "OnDemand",
    "Outcome",
    "OutcomeWaiter",
    "OutcomeWatch",
    "SingleFlight",
    "TrackReader",
    "current_predictions",
    "marker_is_free",
    "recommend",
    "recommended",
]

Outcome = GenresClassified | ClassificationFailed


@dataclass(frozen=True, slots=True)
class TrackView:
    """A track as the responder sees it.

    ``predictions`` is ``None`` when ``extra`` has no (readable) ``genre_predictions``;
    ``predictions_file_id`` is ``extra->>'genre_predictions_file_id'`` (``None`` for rows
    written before the service tracked file ids).
    """

    track_id: int
    file_id: str | None
    audio_url: str | None
    predictions: tuple[Prediction, ...] | None
    predictions_file_id: str | None
    tag_names: tuple[str, ...]
    failed: bool = False
    """A classification of the current file failed for good (the ledger says so): asking
    again would only republish the failure."""


class TrackReader(Protocol):
    """Reads a track's view (one database round trip); ``None`` when it does not exist."""

    async def __call__(self, track_id: int, /) -> TrackView | None: ...


class OnDemand(Protocol):
    """Publishes the request when this caller wins the (track, file) claim.

    Returns True when it published, False when a request is already outstanding.
    """

    async def __call__(self, request: ClassificationRequested, /) -> bool: ...


class Markers(Protocol):
    """On-demand markers, one per (track, file): a request is outstanding since ``at``."""

    async def claim(
        self, track_id: int, file_id: str, *, at: datetime, stale_before: datetime
    ) -> bool:
        """Set the marker to ``at`` when there is none or it is older than ``stale_before``
        (``marker_is_free``); True for exactly one of concurrent callers, across processes."""
        ...

    async def release(self, track_id: int, file_id: str) -> None:
        """Drop the marker (the projector drops it too, when it stores predictions)."""
        ...


Publish = Callable[[ClassificationRequested], Awaitable[None]]


def marker_is_free(requested_at: datetime | None, *, stale_before: datetime) -> bool:
    """No request outstanding, or the one outstanding is presumed lost (older than the cut):
    a lost request must not block the track forever."""
    return requested_at is None or requested_at < stale_before


@dataclass(frozen=True, slots=True)
class SingleFlight:
    """The ``OnDemand`` rule: one outstanding on-demand request per (track, file), across
    requests and responder instances; a marker older than ``stale_after`` seconds is
    reclaimed. A publish that fails drops the marker, so the next request may try again."""

    markers: Markers
    publish: Publish
    clock: Callable[[], datetime]
    stale_after: float

    async def __call__(self, request: ClassificationRequested, /) -> bool:
        now = self.clock()
        claimed = await self.markers.claim(
            request.track_id,
            request.file_id,
            at=now,
            stale_before=now - timedelta(seconds=self.stale_after),
        )
        if not claimed:
            return False
        try:
            await self.publish(request)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.markers.release(request.track_id, request.file_id)
            raise
        log.info(
            "requested an on-demand classification",
            extra={"track_id": request.track_id, "file_id": request.file_id},
        )
        return True


class OutcomeWatch(Protocol):
    async def wait(self, file_id: str, within: float) -> Outcome | None:
        """The first outcome for (track, ``file_id``) seen since the watch began, or None."""
        ...


class OutcomeWaiter(Protocol):
    """Outcomes (classified or failed) of classifications, as they are published."""

    def watch(self, track_id: int) -> AbstractAsyncContextManager[OutcomeWatch]:
        """Start collecting the track's outcomes now (before reading or requesting)."""
        ...


def current_predictions(view: TrackView) -> tuple[Prediction, ...] | None:
    """The stored predictions when they are for the track's current file, else None."""
    stored = StoredPredictions(
        file_id=view.file_id,
        present=view.predictions is not None,
        predictions_file_id=view.predictions_file_id,
    )
    return view.predictions if is_current(stored) else None


def recommended(
    predictions: Iterable[Prediction], own_tags: Iterable[str], limit: int
) -> list[RecommendedTag]:
    """Predictions best first, minus the track's own tags (case-insensitive), at most limit."""
    own = {name.casefold() for name in own_tags}
    ranked = sorted(predictions, key=lambda p: -p.confidence)  # stable: keeps stored ties
    tags: list[RecommendedTag] = []
    seen: set[str] = set()
    for prediction in ranked:
        folded = prediction.name.casefold()
        if folded in own or folded in seen:
            continue
        seen.add(folded)
        tags.append(RecommendedTag(name=prediction.name, score=prediction.confidence))
        if len(tags) >= limit:
            break
    return tags


class _NoWatch:
    async def wait(self, file_id: str, within: float) -> Outcome | None:
        return None


@contextlib.asynccontextmanager
async def _no_watch() -> AsyncIterator[OutcomeWatch]:
    yield _NoWatch()


async def recommend(
    request: RecommendedTagsRequest,
    *,
    tracks: TrackReader,
    on_demand: OnDemand,
    outcomes: OutcomeWaiter,
    available: bool,
) -> RecommendedTags:
    """Answer one request (see the module's docstring for the rules)."""
    track_id = request.track_id
    waiting = available and request.wait_ms > 0
    # Watch before reading: an outcome published between the read and the wait is kept.
    async with outcomes.watch(track_id) if waiting else _no_watch() as watch:
        view = await tracks(track_id)
        if view is None:
            return RecommendedTags(
                track_id=track_id,
                tags=[],
                pending=False,
                error=ReplyError(kind="not_found", message=f"track {track_id} does not exist"),
            )
        if not available:
            return RecommendedTags(track_id=track_id, tags=[], available=False)
        predictions = current_predictions(view)
        if predictions is not None:
            return RecommendedTags(
                track_id=track_id, tags=recommended(predictions, view.tag_names, request.limit)
            )
        if not view.file_id or not view.audio_url or view.failed:
            # nothing to classify, or its classification failed for good (a reclassification
            # with `force` is the way to try again)
            return RecommendedTags(track_id=track_id, tags=[])
        try:
            classification = ClassificationRequested(
                event_id=str(uuid.uuid4()),
                track_id=track_id,
                file_id=view.file_id,
                audio_url=view.audio_url,  # validated here: HttpUrl accepts str input
                occurred_at=datetime.now(UTC),
                reason=ClassificationReason.ON_DEMAND,
            )
        except ValidationError:
            return RecommendedTags(track_id=track_id, tags=[])  # the URL cannot be fetched
        await on_demand(classification)
        if not waiting:
            return RecommendedTags(track_id=track_id, tags=[], pending=True)
        outcome = await watch.wait(view.file_id, request.wait_ms / 1000)
    if outcome is None:
        return RecommendedTags(track_id=track_id, tags=[], pending=True)
    if isinstance(outcome, ClassificationFailed):
        return RecommendedTags(track_id=track_id, tags=[])
    return RecommendedTags(
        track_id=track_id, tags=recommended(outcome.predictions, view.tag_names, request.limit)
    )
