"""Watching for the outcomes of requests this process published.

The listener reads ``track.genres_classified`` and ``track.genres_failed`` without a consumer
group (it must not steal partitions from the projector or commit anything), from the end
offsets as they were when it started: start it before publishing, and no outcome of ours can
be missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from genres.backfill.rule import FailedTrack
from genres.config import Settings
from genres.errors import InvalidMessage
from genres.kafka.parsing import parse
from genres.kafka.tail import TopicTail
from genres_contracts import ClassificationFailed, GenresClassified, topics


@dataclass(frozen=True)
class OutcomeCounts:
    expected: int
    classified: int
    failed: int
    failures: list[FailedTrack] = field(default_factory=list)
    """The failed tracks, by track id."""

    @property
    def timed_out(self) -> int:
        return self.expected - self.classified - self.failed


class OutcomeListener:
    """Counts ``GenresClassified`` / ``ClassificationFailed`` whose source is one of ours."""

    def __init__(self, settings: Settings, *, fetch_max_wait_ms: int = 100) -> None:
        self._settings = settings
        self._topics = {
            settings.topic(topics.GENRES_CLASSIFIED): True,
            settings.topic(topics.GENRES_FAILED): False,
        }
        self._tail = TopicTail(
            settings,
            list(self._topics),
            self._observe,
            on_batch=self._changed_now,
            fetch_max_wait_ms=fetch_max_wait_ms,
            name="outcome-listener",
        )
        self._expected: set[str] = set()
        # A success beats a failure for the same request: the classifier may fail once and
        # succeed on a redelivery.
        self._outcomes: dict[str, bool] = {}
        self._failures: dict[str, FailedTrack] = {}
        self._changed = asyncio.Event()

    async def start(self) -> None:
        await self._tail.start()

    async def stop(self) -> None:
        await self._tail.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def expect(self, event_ids: Iterable[str]) -> None:
        """Count outcomes of these request ids (call before publishing them)."""
        self._expected.update(event_ids)
        self._changed.set()

    def counts(self) -> OutcomeCounts:
        classified = sum(1 for key, ok in self._outcomes.items() if ok and key in self._expected)
        failed = [key for key, ok in self._outcomes.items() if not ok and key in self._expected]
        failures = sorted((self._failures[key] for key in failed), key=lambda f: f.track_id)
        return OutcomeCounts(len(self._expected), classified, len(failed), failures)

    async def wait(self, timeout: float) -> OutcomeCounts:
        """Until every expected outcome is in or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            left = deadline - time.monotonic()
            if counts.timed_out == 0 or left <= 0:
                return counts
            reader = self._tail.reader
            if reader is not None and reader.done():
                reader.result()  # the consumer died: say why
                return counts
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=left)

    def _changed_now(self) -> None:
        self._changed.set()

    def _observe(self, record: Any) -> None:
        ok = self._topics.get(record.topic)
        if ok is None:
            return
        try:
            model: type[GenresClassified | ClassificationFailed] = (
                GenresClassified if ok else ClassificationFailed
            )
            event = parse(model, record.value)
        except InvalidMessage:
            return  # not ours to judge; the projector dead-letters it
        source = event.source_event_id
        if ok or source not in self._outcomes:
            self._outcomes[source] = ok
        if isinstance(event, ClassificationFailed):
            self._failures[source] = FailedTrack(
                event.track_id, event.error.kind, event.error.message
            )
