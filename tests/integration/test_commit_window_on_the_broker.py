"""The commit rule on a real broker: records finishing out of order never let the committed
offset pass an unfinished record, and a restart re-delivers exactly what was not finished."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from genres.classifier.consumer import ConcurrentConsumer
from tests.support.broker import KafkaTestBed
from tests.support.bus import fast_consumer_options, producer
from tests.support.waiting import eventually

COUNT = 30


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return await probe.committed(tp) or 0
    finally:
        await probe.stop()


def make_consumer(kafka: KafkaTestBed, handler: object, concurrency: int) -> ConcurrentConsumer:
    client = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=kafka.group("window"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **fast_consumer_options(),
    )
    return ConcurrentConsumer(
        client,
        [kafka.topic("window")],
        handler,  # type: ignore[arg-type]
        records_in_flight=concurrency,
        grace_seconds=0.5,
        commit_interval=0.01,
        retry_initial=0.01,
        retry_max=0.05,
    )


async def window_topic(kafka: KafkaTestBed, records: Iterable[tuple[bytes, bytes]]) -> str:
    """A new one-partition topic holding ``records`` (key, value), in this order."""
    (topic,) = await kafka.create_topics("window", partitions=1)
    async with producer(kafka.bootstrap_servers) as client:
        for key, value in records:
            await client.send_and_wait(topic, value, key=key)
    return topic


async def test_out_of_order_completion_never_commits_past_an_unfinished_record(
    kafka: KafkaTestBed,
) -> None:
    topic = await window_topic(kafka, ((f"k{i}".encode(), b"x") for i in range(COUNT)))
    tp = TopicPartition(topic, 0)

    release = {offset: asyncio.Event() for offset in range(COUNT)}
    started: set[int] = set()

    async def handler(record: ConsumerRecord[bytes, bytes]) -> None:
        started.add(record.offset)
        await release[record.offset].wait()

    consumer = make_consumer(kafka, handler, concurrency=COUNT)
    await consumer.start()
    order = list(range(COUNT))
    random.Random(7).shuffle(order)
    # Finish two thirds of the records, in a random order, checking after each one.
    finished: set[int] = set()
    try:
        await eventually(lambda: len(started) == COUNT, what="every record started")
        for offset in order[: COUNT * 2 // 3]:
            release[offset].set()
            finished.add(offset)
            await asyncio.sleep(0.05)
            position = await committed(kafka.bootstrap_servers, kafka.group("window"), tp)
            first_unfinished = min(set(range(COUNT)) - finished)
            assert position <= first_unfinished
        await asyncio.sleep(0.2)
        final = await committed(kafka.bootstrap_servers, kafka.group("window"), tp)
        assert final == min(set(range(COUNT)) - finished)
    finally:
        # A crash: whatever did not finish is abandoned, uncommitted.
        await consumer.stop()

    redelivered: list[int] = []

    async def record_all(record: ConsumerRecord[bytes, bytes]) -> None:
        redelivered.append(record.offset)

    again = make_consumer(kafka, record_all, concurrency=8)
    await again.start()
    try:
        await eventually(lambda: len(redelivered) >= COUNT - final, what="re-delivery")
    finally:
        await again.stop()
    assert sorted(redelivered) == list(range(final, COUNT))
    assert set(range(COUNT)) - finished <= set(redelivered)


async def test_records_of_one_key_run_one_after_another_in_offset_order(
    kafka: KafkaTestBed,
) -> None:
    await window_topic(kafka, ((f"track-{i % 2}".encode(), str(i).encode()) for i in range(20)))

    seen: dict[bytes, list[int]] = {}
    running: dict[bytes, int] = {}
    overlaps = 0

    async def handler(record: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal overlaps
        key = record.key or b""
        overlaps += running.get(key, 0)
        running[key] = running.get(key, 0) + 1
        await asyncio.sleep(random.random() * 0.02)
        seen.setdefault(key, []).append(record.offset)
        running[key] -= 1

    consumer = make_consumer(kafka, handler, concurrency=16)
    await consumer.start()
    try:
        await eventually(lambda: sum(map(len, seen.values())) == 20, what="all records")
    finally:
        await consumer.stop()
    assert overlaps == 0
    for offsets in seen.values():
        assert offsets == sorted(offsets)
        assert len(offsets) == 10


async def test_the_window_stops_fetching_when_full(kafka: KafkaTestBed) -> None:
    await window_topic(kafka, ((str(i).encode(), b"x") for i in range(50)))
    gate = asyncio.Event()
    peak = 0

    async def handler(record: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal peak
        peak = max(peak, consumer.in_flight)
        await gate.wait()

    consumer = make_consumer(kafka, handler, concurrency=5)
    await consumer.start()
    try:
        await eventually(lambda: consumer.in_flight == 5, what="a full window")
        await asyncio.sleep(0.5)
        assert consumer.in_flight == 5, "nothing more is taken while the window is full"
        gate.set()
        await eventually(lambda: consumer.handled == 50, what="all records handled")
    finally:
        await consumer.stop()
    assert peak <= 5


async def test_a_failing_handler_is_retried_and_its_record_committed_only_once_done(
    kafka: KafkaTestBed,
) -> None:
    topic = await window_topic(kafka, [(b"k", b"x")])
    tp = TopicPartition(topic, 0)

    attempts = 0
    positions: list[int] = []

    async def handler(record: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal attempts
        attempts += 1
        positions.append(await committed(kafka.bootstrap_servers, kafka.group("window"), tp))
        if attempts < 3:
            raise ConnectionError("database gone")

    consumer = make_consumer(kafka, handler, concurrency=4)
    await consumer.start()
    try:
        await eventually(lambda: consumer.handled == 1, what="the record handled")

        async def committed_past_it() -> bool:
            return await committed(kafka.bootstrap_servers, kafka.group("window"), tp) == 1

        await eventually(committed_past_it, what="the record committed")
    finally:
        await consumer.stop()
    assert attempts == 3
    assert consumer.retried == 2
    assert positions == [0, 0, 0], "nothing was committed while the handler kept failing"
