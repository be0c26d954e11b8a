"""Every classification outcome, for the requests waiting on this instance.

Every responder instance must see every ``track.genres_classified`` and
``track.genres_failed`` record (a waiting request may be on any instance), so the
:class:`OutcomeListener` is an aiokafka consumer without a group, on all partitions, from
the end; it offers each outcome to the watches of its track (``responder/watch.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka.structs import ConsumerRecord

from genres.config import Settings
from genres.errors import InvalidMessage
from genres.kafka.parsing import parse
from genres.kafka.tail import TopicTail
from genres.observability.stalls import StallWatchdog
from genres.responder.rule import Outcome, OutcomeWatch
from genres.responder.watch import Clock, LoopClock, Watch
from genres_contracts import ClassificationFailed, GenresClassified, topics

__all__ = ["RESPONDER_FETCH_MAX_WAIT_MS", "OutcomeListener"]

log = logging.getLogger(__name__)

# Fetch wait for the request and outcome consumers: Tansu answers a fetch only after it.
RESPONDER_FETCH_MAX_WAIT_MS = 5


class OutcomeListener:
    """Reads every classification outcome (no consumer group) and resolves the waiters."""

    def __init__(
        self,
        settings: Settings,
        *,
        fetch_max_wait_ms: int = RESPONDER_FETCH_MAX_WAIT_MS,
        start_timeout: float = 30.0,
        watchdog: StallWatchdog | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._start_timeout = start_timeout
        self._clock = clock or LoopClock()
        self._topics: dict[str, type[Outcome]] = {
            settings.topic(topics.GENRES_CLASSIFIED): GenresClassified,
            settings.topic(topics.GENRES_FAILED): ClassificationFailed,
        }
        self._watches: dict[int, set[Watch]] = {}
        self._tail = TopicTail(
            settings,
            list(self._topics),
            self._offer,
            fetch_max_wait_ms=fetch_max_wait_ms,
            name="genres-outcomes",
            watchdog=watchdog,
        )

    @contextlib.asynccontextmanager
    async def watch(self, track_id: int) -> AsyncIterator[OutcomeWatch]:
        watch = Watch(self._clock)
        self._watches.setdefault(track_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(track_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[track_id]

    @property
    def watching(self) -> int:
        """Tracks with at least one waiting request."""
        return len(self._watches)

    async def start(self) -> None:
        """Read from the end of every partition; returns once all are positioned."""
        async with asyncio.timeout(self._start_timeout):
            await self._tail.start()

    async def stop(self) -> None:
        await self._tail.stop()

    def _offer(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if not self._watches:
            return  # nobody waits: skip parsing
        model = self._topics.get(record.topic)
        if model is None:
            return
        try:
            outcome: Outcome = parse(model, record.value)
        except InvalidMessage as exc:
            log.debug("ignored an unreadable outcome", extra={"error": str(exc)})
            return
        for watch in self._watches.get(outcome.track_id, ()):
            watch.offer(outcome)
