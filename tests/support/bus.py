"""Talking to the service as other teams would: plain JSON records, raw consumers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition


@asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def send_json(
    client: AIOKafkaProducer,
    topic: str,
    value: Any,
    *,
    key: str | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """A record as any producer would send it: JSON value, track id key, no headers."""
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    await client.send_and_wait(
        topic, value=raw, key=key.encode() if key is not None else None, headers=headers
    )


def reader(bootstrap: str | None, *subscribed: str) -> AIOKafkaConsumer:
    """A group-less consumer (not started) reading from the earliest records, fast fetches;
    of every partition of the ``subscribed`` topics, if any (else assign them yourself)."""
    return AIOKafkaConsumer(
        *subscribed,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **fast_consumer_options(),
    )


async def read_topic(
    bootstrap: str | None,
    topic: str,
    *,
    count: int | None = None,
    timeout: float = 30.0,
    where: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda _: True,
    linger_ms: int = 0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic`` that match ``where``, from its start, without a group: the
    one topic reader of the tests.

    Without ``count``: every record up to the topic's end now (none if it is missing); fails
    when the end is not reached within ``timeout``. With ``count``: until that many records
    match or ``timeout`` passes (the topic may appear meanwhile), then, with ``linger_ms``,
    one more fetch that long for any record too many."""
    consumer = reader(bootstrap)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []

    def fetched(batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> bool:
        for records in batches.values():
            found.extend(record for record in records if where(record))
        return bool(batches)

    try:
        deadline = time.monotonic() + timeout
        partitions = await _assign(consumer, topic)
        if count is None:
            while partitions and not await _at_end(consumer, partitions):
                if fetched(await consumer.getmany(timeout_ms=100)):
                    continue
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {topic} to its end within {timeout}s")
            return found
        while len(found) < count and time.monotonic() < deadline:
            if not partitions:
                await asyncio.sleep(0.1)
                partitions = await _assign(consumer, topic)
                continue
            fetched(await consumer.getmany(timeout_ms=200))
        if linger_ms:
            fetched(await consumer.getmany(timeout_ms=linger_ms))
        return found
    finally:
        await consumer.stop()


async def _assign(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of ``topic`` from its start (none while the topic is missing)."""
    await consumer._client.force_metadata_update()
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if partitions:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
    return partitions


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    # Tansu answers ListOffsets(latest) wrongly for batched records (the end offset of a
    # partition holding one batch of 80 records is 1), so the end is the high watermark
    # that fetch responses carry, which it gets right.
    for partition in partitions:
        end = consumer.highwater(partition)
        if end is None or await consumer.position(partition) < end:
            return False
    return True


def values(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in records if record.value is not None]


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return None


@asynccontextmanager
async def serving(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    reply: Callable[[Any], Awaitable[None]],
) -> AsyncIterator[None]:
    """Run ``reply(record)`` in a task of its own for every record of the started ``consumer``;
    at the end, stop serving, then stop the consumer and the producer."""

    async def serve() -> None:
        pending: set[asyncio.Task[None]] = set()
        async for record in consumer:
            task = asyncio.create_task(reply(record))
            pending.add(task)
            task.add_done_callback(pending.discard)

    server = asyncio.create_task(serve())
    try:
        yield
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await consumer.stop()
        await producer.stop()


def fast_consumer_options(*, fast_group_join: bool = True) -> dict[str, int]:
    """aiokafka consumer settings that make a Tansu round trip fast.

    These keyword arguments are accepted both by ``aiokafka.AIOKafkaConsumer`` and by
    FastStream's ``KafkaBroker.subscriber(...)``.

    * ``fetch_max_wait_ms=10``: Tansu answers a fetch only after the full wait, even when
      records are there (one hop costs ~140 ms at the default 500 ms, ~3 ms at 10 ms).
      Harmless against a real Kafka too (more, smaller fetch requests when idle).
    * ``session_timeout_ms=1000`` / ``heartbeat_interval_ms=300`` (``fast_group_join``, for
      tests): a consumer-group join takes ~1 s on Tansu instead of ~5 s. Too
      aggressive for production (a GC pause or a slow event loop would cost a rebalance), so
      pass ``fast_group_join=False`` to keep the defaults there.
    """
    options = {"fetch_max_wait_ms": 10}
    if fast_group_join:
        options |= {"session_timeout_ms": 1000, "heartbeat_interval_ms": 300}
    return options


async def create_topics(
    bootstrap_servers: str, names: Iterable[str], partitions: int = 3
) -> list[str]:
    """Create ``names`` with the service's own ``ensure_topics`` (existing ones are left as
    they are); returns the names created, once the broker serves all of ``names``."""
    from genres.config import load_settings
    from genres.kafka.broker import ensure_topics

    settings = load_settings(
        kafka_bootstrap_servers=bootstrap_servers, kafka_topic_partitions=partitions
    )
    return await ensure_topics(settings, list(dict.fromkeys(names)))
