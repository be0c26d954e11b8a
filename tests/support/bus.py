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


def reader(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less consumer (not started) reading from the earliest records, fast fetches."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **fast_consumer_options(),
    )


async def collect(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    timeout: float = 30.0,
    where: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda _: True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``count`` matching records or the timeout."""
    consumer = reader(bootstrap)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        assigned = False
        while time.monotonic() < deadline and len(found) < count:
            if not assigned:
                partitions = await _partitions(consumer, topic)
                if partitions:
                    consumer.assign(partitions)
                    await consumer.seek_to_beginning(*partitions)
                    assigned = True
                else:
                    await asyncio.sleep(0.1)
                    continue
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(record for record in records if where(record))
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    ids = consumer.partitions_for_topic(topic)
    if ids is None:
        await consumer._client.force_metadata_update()
        ids = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(ids or ())]


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


async def read_from_start(
    bootstrap: str | None, topic: str, count: int, *, then_wait_ms: int = 0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Up to ``count`` records of ``topic`` from its start (20 s at most), without a group;
    then, when ``then_wait_ms`` is given, one more fetch waiting that long for any extra."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 20
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        if then_wait_ms:
            for batch in (await consumer.getmany(timeout_ms=then_wait_ms)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


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
