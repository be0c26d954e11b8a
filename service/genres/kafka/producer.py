"""Publishing: one aiokafka producer per process, JSON values keyed by track id."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel

from genres.config import Settings
from genres.kafka.broker import client_options, leaders
from genres.kafka.dead_letters import dead_letter
from genres.kafka.records import Record
from genres.kafka.refusals import refused

JSON_HEADERS = [("content-type", b"application/json")]


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=False).encode()


def track_key(track_id: int | None) -> bytes | None:
    return None if track_id is None else str(track_id).encode()


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """A topic that refuses our writes is named as such (``ClusterRefused``, WRITE)."""
    try:
        yield
    except KafkaError as exc:
        refusal = refused(exc, operation="WRITE")
        if refusal is not None:
            raise refusal from exc
        raise


@dataclass
class _Partition:
    acknowledged: int = 0
    waiting: int = 0
    refused_at: float | None = None


#: How long a send refused by the cluster keeps its partition waiting without a new send: longer
#: than the callers' longest backoff (15 s), so that a refusal retried stays one wait; one whose
#: caller gave up is forgotten.
REFUSAL_HOLD_SECONDS = 20.0


class Deliveries:
    """Per partition written: sends acknowledged, sends waiting for their acknowledgement, and
    when the last one ended refused by the cluster's state (too few in-sync replicas, no
    leader, no answer in time) with none acknowledged since.

    The stall watchdog reads it as a consumer's offsets (``genres.observability.progress``):
    progress is the count acknowledged, the end adds what waits, and a refusal waits for
    ``hold`` seconds (its caller retries meanwhile), so produces refused for longer than the
    bound make the partition stalled however the client and the callers retry them.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, hold: float = REFUSAL_HOLD_SECONDS
    ) -> None:
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._clock = clock
        self._hold = hold

    def partitions(self) -> Iterator[tuple[str, int]]:
        return iter(list(self._partitions))

    def progress(self, topic: str, partition: int) -> int | None:
        found = self._partitions.get((topic, partition))
        return None if found is None else found.acknowledged

    def end(self, topic: str, partition: int) -> int | None:
        found = self._partitions.get((topic, partition))
        if found is None:
            return None
        refused = found.refused_at is not None and self._clock() - found.refused_at < self._hold
        return found.acknowledged + found.waiting + (1 if refused else 0)

    def started(self, topic: str, partition: int) -> None:
        self._partitions.setdefault((topic, partition), _Partition()).waiting += 1

    def acknowledged(self, topic: str, partition: int) -> None:
        state = self._partitions[(topic, partition)]
        state.waiting -= 1
        state.acknowledged += 1
        state.refused_at = None

    def ended(self, topic: str, partition: int, error: BaseException) -> None:
        """A send ended without an acknowledgement (failed, or cancelled)."""
        state = self._partitions[(topic, partition)]
        state.waiting -= 1
        if getattr(error, "retriable", False) or isinstance(error, KafkaTimeoutError):
            state.refused_at = self._clock()


ErrorHook = Callable[[BaseException, TopicPartition], None]
Clock = Callable[[], float]

REPLY_TOPIC_IDLE_SECONDS = 60.0


class ReplyTopicMissing(Exception):
    """The requester's reply topic does not exist (it is gone): the reply cannot be given."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"the reply topic {topic} does not exist")
        self.topic = topic


@dataclass
class _Reply:
    waiting: int = 0
    used: float = 0.0


class Publisher:
    """Publishes messages and dead letters, each acknowledged by the broker before returning.

    :meth:`publish` takes canonical topic names (``track.uploaded``, unless ``prefixed``) and
    applies the settings' prefix, the one place it is applied; :meth:`send_and_wait` and
    :meth:`publish_json` take full names (a dead letter's topic, a requester's reply topic).
    Each send to the service's topics is counted per partition (:class:`Deliveries`): the
    publisher picks the partition itself, with the client's own default partitioner, so that
    it knows which partition a send waits on.
    """

    def __init__(
        self, producer: AIOKafkaProducer, settings: Settings, *, clock: Clock = time.monotonic
    ) -> None:
        self._producer = producer
        self._settings = settings
        self._partitioner = DefaultPartitioner()
        self.deliveries = Deliveries(clock=clock)
        self.on_dead_letter: Callable[[str], None] | None = None
        """Called with the original topic after each dead letter (metrics)."""
        self.on_error: ErrorHook | None = None
        """Told each send that failed and its partition (the stall watchdog's reporter)."""
        self._replies: dict[str, _Reply] = {}
        self._clock = clock

    @classmethod
    def create(cls, settings: Settings, **options: Any) -> Publisher:
        producer = AIOKafkaProducer(
            **client_options(settings),
            acks="all",
            enable_idempotence=settings.kafka_enable_idempotence,
            linger_ms=1,
            compression_type=settings.compression_type,
            max_request_size=16 * 1024 * 1024,
            **options,
        )
        return cls(producer, settings)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        return self._producer

    async def publish(
        self,
        topic: str,
        message: BaseModel,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        prefixed: bool = False,
    ) -> None:
        """Publish and wait for the broker's acknowledgement."""
        name = topic if prefixed else self._settings.topic(topic)
        with _writing():
            await self.send_and_wait(
                name, value=encode(message), key=key, headers=JSON_HEADERS + list(headers or [])
            )

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send one record to a service topic (full name) and wait for its acknowledgement,
        counted in :attr:`deliveries`."""
        partitions = sorted(await self._producer.partitions_for(topic))
        available = self._producer.client.cluster.available_partitions_for_topic(topic)
        partition: int = self._partitioner(key, partitions, sorted(available or ()))
        self.deliveries.started(topic, partition)
        try:
            await self._producer.send_and_wait(
                topic, value=value, key=key, headers=headers, partition=partition
            )
        except BaseException as exc:
            self.deliveries.ended(topic, partition, exc)
            if self.on_error is not None and isinstance(exc, Exception):
                # A refusal reaches the watchdog named as what it refused: a WRITE.
                reported = refused(exc, operation="WRITE") or exc
                self.on_error(reported, TopicPartition(topic, partition))
            raise
        self.deliveries.acknowledged(topic, partition)

    async def publish_json(
        self, topic: str, value: Any, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Publish a plain JSON value to a requester's reply topic (full name, never created).

        Raises :class:`ReplyTopicMissing` when the cluster does not have the topic (its
        requester is gone). A reply topic lives as long as its requester: one unused for
        ``REPLY_TOPIC_IDLE_SECONDS`` is no longer tracked in the client's metadata, so that a
        requester's deleted topic is not asked about (and reported missing) at every refresh.
        """
        if topic not in self._replies:
            await self._check_reply_topic(topic)
        reply = self._replies.setdefault(topic, _Reply())
        reply.waiting += 1
        try:
            with _writing():
                await self._producer.send_and_wait(
                    topic, value=json.dumps(value).encode(), key=key, headers=JSON_HEADERS + headers
                )
        except UnknownTopicOrPartitionError as exc:
            raise ReplyTopicMissing(topic) from exc
        finally:
            reply.waiting -= 1
            reply.used = self._clock()
            self._forget_idle_replies()

    async def _check_reply_topic(self, topic: str) -> None:
        client = self._producer.client
        if client.cluster.partitions_for_topic(topic) is None and not (
            await self.reply_topic_exists(topic)
        ):
            raise ReplyTopicMissing(topic)
        # Tracked from now on (a known topic's send would not add it), until idle.
        await client.add_topic(topic)

    async def reply_topic_exists(self, topic: str) -> bool:
        """Whether the cluster has ``topic`` now (one metadata request); a topic gone is no
        longer tracked. Raises ``KafkaError`` when no broker answers."""
        if (await leaders(self._producer.client, [topic])).get(topic):
            return True
        self._replies.pop(topic, None)
        self._untrack({topic})
        return False

    def _forget_idle_replies(self) -> None:
        now = self._clock()
        idle = {
            topic
            for topic, reply in self._replies.items()
            if not reply.waiting and now - reply.used > REPLY_TOPIC_IDLE_SECONDS
        }
        for topic in idle:
            del self._replies[topic]
        self._untrack(idle)

    def _untrack(self, topics: set[str]) -> None:
        client = self._producer.client
        # aiokafka has no getter for the topics it tracks; every one was sent to through here.
        tracked = set(getattr(client, "_topics", ()))
        kept = tracked - topics
        if kept and kept != tracked:
            client.set_topics(kept)

    async def dead_letter(self, record: Record, reason: str) -> None:
        """Send ``record``, unchanged, to ``<its topic>.dlq`` (the topic as the record had it)."""
        with _writing():
            await dead_letter(self, record, reason)
        if self.on_dead_letter is not None:
            self.on_dead_letter(record.topic)
