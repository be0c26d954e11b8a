"""The responder's moving parts: the request tasks, their lifecycle, the ports' adapters
and the reply path.

* The FastStream subscriber only hands the raw record to :meth:`ResponderRuntime.accept`;
  each request runs in its own task (at most ``max_in_flight`` at once; beyond that the
  subscriber waits for a slot, which is the back-pressure). A request waiting for a
  classification (``wait_ms``) therefore never holds up the others.
* The reply is published by the task itself to the ``reply_to`` topic **as given** (no
  prefix), with the request's ``correlation_id`` header echoed byte for byte (UTF-8 or not).
  A reply topic that does not exist is its requester's problem: one WARNING per topic, the
  reply dropped, the topic never created. A request without a usable ``reply_to`` (or whose
  reply cannot be published otherwise) goes to the dead-letter topic with the reason; a
  request that cannot be parsed gets an ``invalid_request`` error reply; an unexpected error
  an ``internal`` one.
* A refusal from the cluster (``ClusterRefused``) on the service's own topics, its reply
  topics (``<prefix>genres.replies.``) included, ends the request and goes to ``on_refused``
  (the process stops on it); a refused reply topic of another name is the caller's, and its
  request is dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.config import Backend, Settings
from genres.errors import ClusterRefused, InvalidMessage
from genres.kafka.parsing import parse
from genres.kafka.producer import Publisher, ReplyTopicMissing, track_key
from genres.responder.outcomes import OutcomeListener
from genres.responder.rule import SingleFlight, recommend
from genres.responder.tracks import SqlMarkers, TrackView, track_view
from genres_contracts import (
    ClassificationRequested,
    RecommendedTags,
    RecommendedTagsRequest,
    ReplyError,
    topics,
)
from genres_contracts.kafka import REPLY_TOPIC_STEM

if TYPE_CHECKING:
    from genres.kafka.entry import Subscribed

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "ResponderRuntime"]

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 1000
REPLY_PUBLISH_TIMEOUT_S = 10.0
#: Reply topics said missing, remembered so that each is said once (then forgotten in bulk).
MISSING_TOPICS_REMEMBERED = 10_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


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


@dataclass
class ResponderRuntime:
    """The responder's moving parts: outcome listener, request tasks, collaborators."""

    settings: Settings
    engine: AsyncEngine
    publisher: Publisher
    outcomes: OutcomeListener
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    stale_after: float = 240.0
    #: the engine for the hot read path (autocommit); ``engine`` when None
    read_engine: AsyncEngine | None = None
    #: the subscriber of requests (its consumer exists while the broker runs)
    subscribed: Subscribed | None = None
    on_refused: Callable[[ClusterRefused], object] | None = None
    """Told a refusal from the cluster that ended a request (the stall watchdog's reporter)."""
    _slots: asyncio.Semaphore = field(init=False)
    #: the single-flight on-demand rule over ``classification_requests``
    on_demand: SingleFlight = field(init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _missing_topics: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self.on_demand = SingleFlight(
            markers=SqlMarkers(self.engine),
            publish=self.publish_request,
            clock=_utcnow,
            stale_after=self.stale_after,
        )

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

    # -- collaborators of the role ---------------------------------------------------------

    async def read_track(self, track_id: int) -> TrackView | None:
        return await track_view(self.read_engine or self.engine, track_id)

    async def publish_request(self, request: ClassificationRequested) -> None:
        await self.publisher.publish(
            topics.CLASSIFICATION_REQUESTED, request, key=track_key(request.track_id)
        )

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
            if isinstance(exc, ClusterRefused) and self.on_refused is not None:
                self.on_refused(exc)  # named once, where it leads
                return
            log.error("a request task failed", exc_info=exc)

    @property
    def _reply_topics(self) -> str:
        return self.settings.topic(REPLY_TOPIC_STEM)

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
            if isinstance(exc, ClusterRefused) and reply_to.startswith(self._reply_topics):
                raise  # the service's own ACL is missing, not the caller's doing
            if isinstance(exc, ReplyTopicMissing) or not await self._reply_topic_exists(reply_to):
                self._missing_reply_topic(reply_to)
                return
            await self._dead_letter(
                record, f"cannot publish the reply to {reply_to!r}: {type(exc).__name__}: {exc}"
            )

    async def _reply_topic_exists(self, topic: str) -> bool:
        """False only when the cluster says the topic is gone (unsure: True)."""
        try:
            async with asyncio.timeout(REPLY_PUBLISH_TIMEOUT_S / 2):
                return await self.publisher.reply_topic_exists(topic)
        except Exception:
            return True

    def _missing_reply_topic(self, topic: str) -> None:
        """A reply to a topic that does not exist is its requester's problem (it is gone, or
        never created it): said once per topic, at WARNING; the topic is never created."""
        if topic in self._missing_topics:
            return
        if len(self._missing_topics) >= MISSING_TOPICS_REMEMBERED:
            self._missing_topics.clear()
        self._missing_topics.add(topic)
        log.warning(
            "reply topic %s does not exist (its requester is gone?): replies to it are dropped",
            topic,
            extra={"topic": topic},
        )

    async def answer(self, value: bytes | None) -> RecommendedTags:
        """The reply to one request value (raises only a refusal from the cluster)."""
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
        except ClusterRefused:
            raise
        except Exception as exc:
            log.exception("answering a request failed", extra={"track_id": request.track_id})
            return RecommendedTags(
                track_id=request.track_id,
                tags=[],
                pending=False,
                error=ReplyError(kind="internal", message=f"{type(exc).__name__}"),
            )
