"""The responder on the bus: answers ``track.recommended_tags`` requests.

Wiring (the composition root does this)::

    runtime = register_responder(broker, settings=settings, engine=engine, publisher=publisher)
    await publisher.start()
    await runtime.start()   # the outcome listener, positioned before any request is served
    await broker.start()
    ...
    await broker.stop()
    await runtime.stop()    # waits (bounded) for the requests in flight

How a request is handled:

* The FastStream subscriber only hands the raw record to a task and returns; each request
  runs in its own task (at most ``max_in_flight`` at once; beyond that the subscriber waits
  for a slot, which is the back-pressure). A request waiting for a classification
  (``wait_ms``) therefore never holds up the others. The reply is published by the task
  itself to the ``reply_to`` topic **as given** (no prefix), with the request's
  ``correlation_id`` header, so FastStream's automatic reply is switched off
  (``no_reply=True``).
* Commit policy: ``AckPolicy.ACK_FIRST`` (offsets auto-committed in the background). A
  responder that crashes loses the requests it was answering; their requesters time out
  and may ask again. Requests are cheap to repeat and are answered within seconds, so
  at-most-once is the right trade here (redelivering stale requests would only produce
  replies nobody waits for).
* A request whose value cannot be parsed gets a reply with ``error.kind =
  invalid_request`` (``track_id`` when the JSON had a usable one). A request without a
  ``reply_to`` header (or with one that is not UTF-8, or to which the reply cannot be
  published) goes to ``track.recommended_tags.dlq`` with the reason.
* ``correlation_id`` is echoed back byte for byte, whatever it holds (UTF-8 or not): the
  requester matches on it, and a requester that can send bytes can compare bytes, so there
  is nothing to gain from dead-lettering an odd id. A request without one is still answered
  (without the header). FastStream's own parser decodes every header as UTF-8 and would drop
  such a record, so this subscriber has a parser that tolerates undecodable headers.

Outcomes: every responder instance must see every ``track.genres_classified`` and
``track.genres_failed`` record (a waiting request may be on any instance), so the
:class:`OutcomeListener` is an aiokafka consumer without a group, on all partitions, from
the end; it resolves the waiters keyed by track (and then file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.config import Backend, Settings
from genres.errors import InvalidMessage
from genres.kafka.entry import BusEntry
from genres.kafka.producer import Publisher, track_key
from genres.kafka.records import parse
from genres.kafka.tail import TopicTail
from genres.observability.stalls import StallWatchdog
from genres.responder.rule import Outcome, OutcomeWatch, recommend
from genres.responder.tracks import (
    TrackView,
    claim_on_demand,
    create_read_engine,
    release_on_demand,
    track_view,
)
from genres_contracts import (
    ClassificationFailed,
    ClassificationRequested,
    GenresClassified,
    RecommendedTags,
    RecommendedTagsRequest,
    ReplyError,
    topics,
)

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "OutcomeListener",
    "ResponderRuntime",
    "register_responder",
]

from genres.subscriptions import RESPONDER

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 1000
# Fetch wait for the request and outcome consumers: Tansu answers a fetch only after it.
RESPONDER_FETCH_MAX_WAIT_MS = 5
REPLY_PUBLISH_TIMEOUT_S = 10.0
GROUP = RESPONDER.group


# -- outcomes ----------------------------------------------------------------------------------


class _Watch:
    """Collects one track's outcomes from the moment it is registered."""

    __slots__ = ("_changed", "_outcomes")

    def __init__(self) -> None:
        self._outcomes: list[Outcome] = []
        self._changed = asyncio.Event()

    def offer(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._changed.set()

    async def wait(self, file_id: str, within: float) -> Outcome | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for outcome in self._outcomes:
                if outcome.file_id == file_id:
                    return outcome
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return None


class OutcomeListener:
    """Reads every classification outcome (no consumer group) and resolves the waiters."""

    def __init__(
        self,
        settings: Settings,
        *,
        fetch_max_wait_ms: int = RESPONDER_FETCH_MAX_WAIT_MS,
        start_timeout: float = 30.0,
        watchdog: StallWatchdog | None = None,
    ) -> None:
        self._start_timeout = start_timeout
        self._topics: dict[str, type[Outcome]] = {
            settings.topic(topics.GENRES_CLASSIFIED): GenresClassified,
            settings.topic(topics.GENRES_FAILED): ClassificationFailed,
        }
        self._watches: dict[int, set[_Watch]] = {}
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
        watch = _Watch()
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


# -- requests ----------------------------------------------------------------------------------


def _header(headers: Any, name: str) -> bytes | None:
    found = None
    for key, value in headers or ():
        if key == name:
            found = value
    return found


def _readable_track_id(value: bytes | None) -> int | None:
    """The request's ``track_id`` when the JSON has a usable one, for an error reply."""
    try:
        data = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    track_id = data.get("track_id") if isinstance(data, dict) else None
    if type(track_id) is int and 0 < track_id < 2**63:
        return track_id
    return None


async def _record_decoder(message: StreamMessage[Any]) -> Any:
    """The "body" is the untouched record: the handler validates the bytes itself.

    (Taking the record this way, rather than through an injected ``KafkaMessage``, avoids
    FastDepends resolving a context field in a worker thread for every request.)
    """
    return message.raw_message


@dataclass
class ResponderRuntime:
    """The responder's moving parts: outcome listener, request tasks, collaborators."""

    settings: Settings
    engine: AsyncEngine
    publisher: Publisher
    outcomes: OutcomeListener
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    stale_after: float = 240.0
    #: the engine for the hot read path (no pre-ping); ``engine`` when None
    read_engine: AsyncEngine | None = None
    own_read_engine: bool = False
    #: the FastStream subscriber of requests (its consumer exists while the broker runs)
    subscriber: Any = None
    _slots: asyncio.Semaphore = field(init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_in_flight)

    @property
    def available(self) -> bool:
        return self.settings.backend is not Backend.NONE

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        """Start the outcome listener; call before the broker starts consuming requests."""
        await self.outcomes.start()

    async def stop(self, *, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for the requests in flight, then cancel the rest."""
        tasks = set(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        await self.outcomes.stop()
        if self.own_read_engine and self.read_engine is not None:
            await self.read_engine.dispose()

    # -- collaborators of the role ---------------------------------------------------------

    async def read_track(self, track_id: int) -> TrackView | None:
        return await track_view(self.read_engine or self.engine, track_id)

    async def on_demand(self, request: ClassificationRequested) -> bool:
        claimed = await claim_on_demand(
            self.engine, request.track_id, request.file_id, stale_after=self.stale_after
        )
        if not claimed:
            return False
        try:
            await self.publisher.publish(
                topics.CLASSIFICATION_REQUESTED, request, key=track_key(request.track_id)
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await release_on_demand(self.engine, request.track_id, request.file_id)
            raise
        log.info(
            "requested an on-demand classification",
            extra={"track_id": request.track_id, "file_id": request.file_id},
        )
        return True

    # -- the request path ------------------------------------------------------------------

    async def accept(self, record: ConsumerRecord[Any, Any]) -> None:
        """Hand the record to its own task; waits only when ``max_in_flight`` are running."""
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(record), name="genres-recommend")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a request task failed", exc_info=exc)

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        await self.publisher.dead_letter(record, reason)

    async def _handle(self, record: ConsumerRecord[Any, Any]) -> None:
        reply_to_raw = _header(record.headers, topics.REPLY_TO_HEADER)
        if not reply_to_raw:
            await self._dead_letter(record, "request has no reply_to header: cannot be answered")
            return
        try:
            reply_to = reply_to_raw.decode()
        except UnicodeDecodeError:
            await self._dead_letter(record, "request's reply_to header is not UTF-8")
            return
        correlation_id = _header(record.headers, topics.CORRELATION_ID_HEADER)
        reply = await self.answer(record.value)
        headers = [] if correlation_id is None else [(topics.CORRELATION_ID_HEADER, correlation_id)]
        try:
            async with asyncio.timeout(REPLY_PUBLISH_TIMEOUT_S):
                await self.publisher.publish_json(
                    reply_to,
                    reply.model_dump(mode="json"),
                    key=track_key(reply.track_id),
                    headers=headers,
                )
        except Exception as exc:
            await self._dead_letter(
                record, f"cannot publish the reply to {reply_to!r}: {type(exc).__name__}: {exc}"
            )

    async def answer(self, value: bytes | None) -> RecommendedTags:
        """The reply to one request value (never raises)."""
        try:
            request = parse(RecommendedTagsRequest, value)
        except InvalidMessage as exc:
            return RecommendedTags(
                track_id=_readable_track_id(value),
                tags=[],
                pending=False,
                error=ReplyError(kind="invalid_request", message=str(exc)[:2000]),
            )
        try:
            return await recommend(
                request,
                tracks=self.read_track,
                on_demand=self.on_demand,
                outcomes=self.outcomes,
                available=self.available,
            )
        except Exception as exc:
            log.exception("answering a request failed", extra={"track_id": request.track_id})
            return RecommendedTags(
                track_id=request.track_id,
                tags=[],
                pending=False,
                error=ReplyError(kind="internal", message=f"{type(exc).__name__}"),
            )


def register_responder(
    broker: KafkaBroker,
    *,
    settings: Settings,
    engine: AsyncEngine,
    publisher: Publisher,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stale_after: float | None = None,
    read_engine: AsyncEngine | None = None,
    read_pool_size: int = 10,
    watchdog: StallWatchdog | None = None,
) -> ResponderRuntime:
    """Subscribe the responder to ``track.recommended_tags`` on ``broker``.

    ``stale_after`` (seconds) is when an on-demand marker may be reclaimed; by default twice
    ``REPLICATE_TIMEOUT_SECONDS``. Track reads go through ``read_engine``; when not given,
    the runtime makes (and disposes) one on ``engine``'s URL with
    :func:`~genres.responder.tracks.create_read_engine` (no pre-ping: one round trip per
    cached answer). ``engine`` serves the on-demand claims. Start the returned runtime
    before the broker. ``watchdog`` watches the outcome listener's partitions.
    """
    own_read_engine = read_engine is None
    if read_engine is None:
        read_engine = create_read_engine(
            engine.url.render_as_string(hide_password=False), pool_size=read_pool_size
        )
    runtime = ResponderRuntime(
        read_engine=read_engine,
        own_read_engine=own_read_engine,
        settings=settings,
        engine=engine,
        publisher=publisher,
        outcomes=OutcomeListener(
            settings,
            fetch_max_wait_ms=min(settings.kafka_fetch_max_wait_ms, RESPONDER_FETCH_MAX_WAIT_MS),
            watchdog=watchdog,
        ),
        max_in_flight=max_in_flight,
        stale_after=2 * settings.replicate_timeout_seconds if stale_after is None else stale_after,
    )
    entry = BusEntry.of(
        RESPONDER,
        settings,
        fetch_max_wait_ms=min(settings.kafka_fetch_max_wait_ms, RESPONDER_FETCH_MAX_WAIT_MS),
    )

    async def handle_request(record: Any) -> None:
        await runtime.accept(record)

    runtime.subscriber = subscriber = entry.subscriber(
        broker,
        ack_policy=AckPolicy.ACK_FIRST,
        no_reply=True,
        decoder=_record_decoder,
        title="recommended_tags",
        description="Answers RecommendedTagsRequest with RecommendedTags on reply_to.",
    )
    subscriber(handle_request)
    return runtime
