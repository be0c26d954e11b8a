"""The projector: stores each track's current genre predictions in ``tracks.extra``.

The decisions are here, in Python: which event of a batch is written (``plan``: the stale
guard, last wins) and which tags an auto-tag upload adds (``auto_tags``). The store
(``projector/store.py``) only reads the tracks, locked for the batch, and applies the plan.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from genres_contracts import GenresClassified, ModelRef, Prediction

log = logging.getLogger(__name__)

AUTO_TAG_MAX_NEW = 5
AUTO_TAG_MAX_TOTAL = 10


class Fate(StrEnum):
    """What a batch does with one event."""

    WRITTEN = "written"
    STALE = "stale"
    """For a file that is no longer the track's current one."""
    MISSING = "missing"
    """For a track that is not in the database."""
    SUPERSEDED = "superseded"
    """A later event of the same batch for the same track and file wins."""


@dataclass(frozen=True, slots=True)
class TrackState:
    """What the projector needs to know of a track before writing."""

    file_id: str | None
    tags: tuple[str, ...] = ()
    """The track's tag names (read only for tracks an auto-tag event may tag)."""


@dataclass(frozen=True, slots=True)
class Write:
    """The predictions to store for a track, with the model that made them."""

    track_id: int
    file_id: str
    predictions: tuple[Prediction, ...]
    model: ModelRef


@dataclass(frozen=True, slots=True)
class Plan:
    fates: tuple[Fate, ...]
    """One per event, in the batch's order."""
    chosen: tuple[int, ...]
    """Indices of the events to write, one per track, in the batch's order."""


def plan(events: Sequence[GenresClassified], tracks: Mapping[int, TrackState]) -> Plan:
    """The stale guard and last-wins: per track, the batch's last event for its current file
    is written; earlier ones for that file are superseded, events for another file are stale.

    Events are in offset order, so "last" is "latest published" and a replay of the topic
    ends in the same state.
    """
    last: dict[int, int] = {}
    for n, event in enumerate(events):
        track = tracks.get(event.track_id)
        if track is not None and track.file_id == event.file_id:
            last[event.track_id] = n
    fates: list[Fate] = []
    for n, event in enumerate(events):
        track = tracks.get(event.track_id)
        if track is None:
            fates.append(Fate.MISSING)
        elif track.file_id != event.file_id:
            fates.append(Fate.STALE)
        elif last[event.track_id] == n:
            fates.append(Fate.WRITTEN)
        else:
            fates.append(Fate.SUPERSEDED)
    return Plan(tuple(fates), tuple(sorted(last.values())))


def auto_tag_candidates(
    predictions: Sequence[Prediction], *, limit: int = AUTO_TAG_MAX_NEW
) -> list[str]:
    """The tag names an auto-tag upload may add, best first, before looking at the track.

    The cut at ``limit`` comes before skipping tags the track already has: a replay then
    finds the same candidates, all present, and adds nothing (idempotent), where skipping
    first would let a replay reach further down the list.
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


def auto_tags(predictions: Sequence[Prediction], have: Sequence[str]) -> list[str]:
    """The whole auto-tag rule (INTERFACE.md): the tags to add to a track that has ``have``.

    Tags scoring at least half the top score, at most ``AUTO_TAG_MAX_NEW``, skipping those
    the track already has (case-insensitive), never taking it past ``AUTO_TAG_MAX_TOTAL``.
    """
    owned = {name.casefold() for name in have}
    fresh = [name for name in auto_tag_candidates(predictions) if name.casefold() not in owned]
    return fresh[: max(0, AUTO_TAG_MAX_TOTAL - len(have))]


class ProjectionBatch(Protocol):
    """One transaction of the store: what ``project`` reads is what it writes over."""

    async def tracks(
        self, track_ids: Collection[int], *, with_tags: Collection[int]
    ) -> Mapping[int, TrackState]:
        """The tracks that exist (tag names only for ``with_tags``), unchanged by anyone
        else until the batch ends."""
        ...

    async def store(self, writes: Sequence[Write]) -> None:
        """Merge the predictions into ``extra`` (two keys, nothing else), record the model
        that made them, and drop the tracks' on-demand markers for those files."""
        ...

    async def add_tags(self, tags: Sequence[tuple[int, Sequence[str]]]) -> int:
        """Link each track to the named tags, reusing a tag named alike but for case;
        returns how many links were made."""
        ...


class ProjectionStore(Protocol):
    def batch(self) -> AbstractAsyncContextManager[ProjectionBatch]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        ...


@dataclass(frozen=True)
class ProjectionReport:
    events: int
    written: int
    stale: int
    missing: int
    superseded: int
    tags_added: int


async def project(
    events: Sequence[GenresClassified], *, store: ProjectionStore
) -> ProjectionReport:
    """Write a batch of classifications; stale and unknown-track events are dropped, not retried.

    Database errors propagate: the caller retries the whole batch before acknowledging it.
    """
    if not events:
        return ProjectionReport(0, 0, 0, 0, 0, 0)
    async with store.batch() as batch:
        current = await batch.tracks(
            {e.track_id for e in events}, with_tags={e.track_id for e in events if e.auto_tag}
        )
        decided = plan(events, current)
        chosen = [events[n] for n in decided.chosen]
        await batch.store(
            [Write(e.track_id, e.file_id, tuple(e.predictions), e.model) for e in chosen]
        )
        tags = [
            (e.track_id, names)
            for e in chosen
            if e.auto_tag and (names := auto_tags(e.predictions, current[e.track_id].tags))
        ]
        tags_added = await batch.add_tags(tags) if tags else 0
    for event, fate in zip(events, decided.fates, strict=True):
        ids = {"track_id": event.track_id, "file_id": event.file_id, "event_id": event.event_id}
        if fate is Fate.MISSING:
            # Never retried: the platform may have deleted the track, or not created it yet;
            # the classification stays in the topic for a later replay.
            log.warning("skipped predictions for a track that does not exist", extra=ids)
        elif fate is Fate.STALE:
            log.info("dropped stale predictions", extra=ids)
        elif fate is Fate.WRITTEN:
            log.info("stored genre predictions", extra=ids)
    report = ProjectionReport(
        events=len(events),
        written=decided.fates.count(Fate.WRITTEN),
        stale=decided.fates.count(Fate.STALE),
        missing=decided.fates.count(Fate.MISSING),
        superseded=decided.fates.count(Fate.SUPERSEDED),
        tags_added=tags_added,
    )
    log.info("projected genre predictions", extra=dataclasses.asdict(report))
    return report
