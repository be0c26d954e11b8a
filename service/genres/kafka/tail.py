"""Reading topics from their end without a consumer group.

Every instance must see every record (outcome listeners, reply readers), nothing may be
committed and no partition may be taken from a group, so these readers assign all partitions
themselves. ``start`` returns only once every partition's end offset is resolved: a record
published after it returns cannot be missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from genres.config import Settings
from genres.kafka.broker import client_options, wait_for_topics
from genres.observability.progress import PositionProgress
from genres.observability.stalls import StallWatchdog
from genres.retry import retrying
from genres.tasks import cancel_and_wait

log = logging.getLogger(__name__)

OnRecord = Callable[[ConsumerRecord[bytes, bytes]], None]
OnBatch = Callable[[], None]


async def _served_partitions(settings: Settings, topics: Sequence[str]) -> dict[str, list[int]]:
    """Each topic's partitions, once the broker serves them all (``TimeoutError`` if not)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await wait_for_topics(admin, topics)
    finally:
        await admin.close()


class TopicTail:
    """Calls ``on_record`` for each record appended to ``topics`` after ``start``."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        on_record: OnRecord,
        *,
        on_batch: OnBatch | None = None,
        fetch_max_wait_ms: int = 10,
        name: str = "tail",
        watchdog: StallWatchdog | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._on_record = on_record
        self._on_batch = on_batch
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._name = name
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        # Every reader is watched (its position is its progress): by the service's watchdog
        # when given, else by one of its own, whose ERROR lines a command's reader still gets.
        self._own_watchdog = watchdog is None
        self._watchdog = watchdog or StallWatchdog(settings.kafka_stall_seconds)

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The reading task (done only if reading failed for good)."""
        return self._reader

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            # The partitions come from the admin client: a consumer that has not subscribed
            # knows no topic's partitions yet (Tansu's metadata listed them all; Kafka's not).
            served = await _served_partitions(self._settings, self._topics)
            partitions = [
                TopicPartition(topic, partition)
                for topic in self._topics
                for partition in served[topic]
            ]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            # Resolve the positions now: a lazy reset later could skip what comes meanwhile.
            for partition in partitions:
                await consumer.position(partition)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._reader = asyncio.create_task(self._read(consumer), name=self._name)
        self._watchdog.watch(self._name, PositionProgress(lambda: self._consumer))
        if self._own_watchdog:
            await self._watchdog.start()

    async def stop(self) -> None:
        self._watchdog.unwatch(self._name)
        if self._own_watchdog:
            await self._watchdog.stop()
        reader, self._reader = self._reader, None
        if reader is not None and reader.done() and not reader.cancelled():
            # It ended on an error already reported (a refusal, a callback's bug).
            reader.exception()
        else:
            await cancel_and_wait(reader)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await retrying(
                lambda: consumer.getmany(timeout_ms=1000),
                what=f"{self._name}: reading",
                on=Exception,
                wait_initial=0.5,
                wait_max=2.0,
                on_error=lambda exc: self._watchdog.note_error(self._name, exc),
                operation="READ",
                topics=self._topics,
            )
            try:
                for records in batches.values():
                    for record in records:
                        self._on_record(record)
            except Exception as exc:
                # A callback's bug ends the reader (``reader`` holds why); the records behind
                # then wait, and the watchdog names this as the reason.
                log.exception("%s: handling a record failed; reading stopped", self._name)
                self._watchdog.note_error(self._name, exc)
                raise
            if batches and self._on_batch is not None:
                self._on_batch()
