"""The requesting side of request/reply, which FastStream lacks on a real Kafka connection.

One :class:`Requester` per process owns a private reply topic
(``<prefix>genres.replies.<host>-<pid>-<random>``, one partition) and an aiokafka consumer
assigned to it by hand (no consumer group, so nothing to join or rebalance), positioned at
the end before the first request is sent. Each request carries the headers ``reply_to``
(that topic) and ``correlation_id`` (a uuid4 hex), FastStream's convention; the reply with
the same ``correlation_id`` resolves the request's future. Replies nobody waits for (late,
or meant for a previous process) are dropped with a debug log.

    async with Requester(settings) as requester:
        reply = await requester.recommended_tags(668, limit=5)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import uuid
from types import TracebackType
from typing import Any, Self

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from genres.bus.broker import client_options, ensure_topics
from genres.bus.producer import JSON_HEADERS, Publisher, track_key
from genres.bus.records import parse
from genres.bus.tail import TopicTail
from genres.config import Settings
from genres.errors import GenresError
from genres_contracts import RecommendedTags, RecommendedTagsRequest, topics

__all__ = ["REPLY_TOPIC_STEM", "RequestTimeout", "Requester", "reply_topic_name"]

log = logging.getLogger(__name__)

REPLY_TOPIC_STEM = "genres.replies."
# A fetch against Tansu returns only after the full wait: keep it short for latency.
REPLY_FETCH_MAX_WAIT_MS = 5
_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


class RequestTimeout(GenresError):
    """No reply came within the request's timeout."""

    def __init__(self, topic: str, correlation_id: str, timeout: float) -> None:
        super().__init__(f"no reply to request {correlation_id} on {topic} within {timeout:g} s")
        self.topic = topic
        self.correlation_id = correlation_id
        self.timeout = timeout


class RequesterClosed(GenresError):
    """The requester stopped while the request was waiting."""


def reply_topic_name(settings: Settings) -> str:
    """A topic name unique to this process: prefix, stem, host, pid and a random part."""
    host = _TOPIC_CHARS.sub("-", socket.gethostname())[:100] or "host"
    return f"{settings.topic(REPLY_TOPIC_STEM)}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _encode(payload: BaseModel | dict[str, Any] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, BaseModel):
        return payload.model_dump_json().encode()
    return json.dumps(payload).encode()


class Requester:
    """Sends requests and awaits their replies on a private reply topic.

    ``publisher`` is shared when given (its lifecycle stays the caller's); otherwise the
    requester creates, starts and stops its own. ``delete_reply_topic`` removes the reply
    topic on :meth:`stop` (best effort).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        publisher: Publisher | None = None,
        fetch_max_wait_ms: int = REPLY_FETCH_MAX_WAIT_MS,
        delete_reply_topic: bool = True,
    ) -> None:
        self._settings = settings
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher.create(settings)
        self._delete_reply_topic = delete_reply_topic
        self.reply_topic = reply_topic_name(settings)
        self._replies = TopicTail(
            settings,
            [self.reply_topic],
            self._resolve,
            fetch_max_wait_ms=fetch_max_wait_ms,
            name="genres-requester-replies",
        )
        self._started = False
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def publisher(self) -> Publisher:
        """The producer requests go out on; callers may publish other messages with it."""
        return self._publisher

    async def start(self) -> None:
        """Create the reply topic, position the consumer at its end, start the publisher."""
        one_partition = self._settings.model_copy(update={"kafka_topic_partitions": 1})
        await ensure_topics(one_partition, [self.reply_topic])
        await self._replies.start()
        try:
            if self._own_publisher:
                await self._publisher.start()
        except BaseException:
            await self._replies.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Fail the requests still waiting, stop the consumer (and own publisher)."""
        started, self._started = self._started, False
        await self._replies.stop()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RequesterClosed("the requester stopped"))
        self._pending.clear()
        if self._own_publisher:
            await self._publisher.stop()
        if self._delete_reply_topic and started:
            await self._drop_reply_topic()

    async def _drop_reply_topic(self) -> None:
        admin = AIOKafkaAdminClient(**client_options(self._settings))
        try:
            async with asyncio.timeout(5):
                await admin.start()
                try:
                    await admin.delete_topics([self.reply_topic])
                finally:
                    await admin.close()
        except Exception as exc:  # best effort: a leftover topic is harmless
            log.debug("could not delete the reply topic", extra={"error": repr(exc)})

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pending(self) -> int:
        """Requests waiting for a reply."""
        return len(self._pending)

    # -- replies -----------------------------------------------------------------------------

    def _resolve(self, record: ConsumerRecord[bytes, bytes]) -> None:
        correlation_id = None
        for name, header_value in record.headers or ():
            if name == topics.CORRELATION_ID_HEADER:
                correlation_id = header_value
        future = self._pending.get(correlation_id) if correlation_id is not None else None
        if future is None or future.done():
            log.debug("dropped a reply nobody waits for", extra={"correlation_id": correlation_id})
            return
        future.set_result(record.value or b"")

    # -- requests ----------------------------------------------------------------------------

    async def request(
        self,
        topic: str,
        payload: BaseModel | dict[str, Any] | bytes,
        *,
        key: bytes | None = None,
        timeout: float = 5.0,
        prefixed: bool = False,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> bytes:
        """Publish ``payload`` to ``topic`` and return the reply's value.

        ``topic`` is canonical (the settings' prefix is applied) unless ``prefixed``.
        ``timeout`` covers publishing and waiting; raises :class:`RequestTimeout`.
        """
        if not self._started:
            raise GenresError("the requester is not started")
        correlation_id = uuid.uuid4().hex
        name = topic if prefixed else self._settings.topic(topic)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        token = correlation_id.encode()
        self._pending[token] = future
        try:
            async with asyncio.timeout(timeout):
                await self._publisher.producer.send_and_wait(
                    name,
                    value=_encode(payload),
                    key=key,
                    headers=[
                        *JSON_HEADERS,
                        (topics.REPLY_TO_HEADER, self.reply_topic.encode()),
                        (topics.CORRELATION_ID_HEADER, token),
                        *(headers or []),
                    ],
                )
                return await future
        except TimeoutError:
            raise RequestTimeout(name, correlation_id, timeout) from None
        finally:
            self._pending.pop(token, None)

    async def recommended_tags(
        self,
        track_id: int,
        *,
        limit: int = 5,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> RecommendedTags:
        """Ask the responder for a track's recommended tags.

        ``timeout`` defaults to ``wait_ms`` plus five seconds.
        """
        request = RecommendedTagsRequest(track_id=track_id, limit=limit, wait_ms=wait_ms)
        value = await self.request(
            topics.RECOMMENDED_TAGS,
            request,
            key=track_key(track_id),
            timeout=wait_ms / 1000 + 5.0 if timeout is None else timeout,
        )
        return parse(RecommendedTags, value)
