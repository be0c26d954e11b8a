"""Produces refused and partitions without a leader, judged by the stall watchdog on a fake
clock (fake producer and metadata; no broker, no waiting)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
)
from aiokafka.partitioner import DefaultPartitioner

from genres.config import load_settings
from genres.kafka.producer import REFUSAL_HOLD_SECONDS, Deliveries, Publisher
from genres.observability.progress import (
    PRODUCER_LOGGER,
    ProduceErrors,
    SendProgress,
    watch_publisher,
)
from genres.observability.stalls import NO_LEADER, PartitionKey, PartitionsStalled, StallWatchdog
from tests.unit.test_stalls import Clock, Source, gauge, run, stall_lines

TOPIC = "track.genres_classified"


def refused(partition: int) -> None:
    """What aiokafka's sender logs while it retries a refused produce by itself."""
    logging.getLogger(PRODUCER_LOGGER).warning(
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        TopicPartition(TOPIC, partition),
        NotEnoughReplicasError,
    )


@pytest.fixture
def watched() -> tuple[StallWatchdog, Deliveries, Clock]:
    clock = Clock()
    watchdog = StallWatchdog(30.0, clock=clock)
    deliveries = Deliveries(clock=clock)
    watchdog.watch("publisher", SendProgress(deliveries), writes=True)
    return watchdog, deliveries, clock


async def test_a_send_refused_for_too_few_replicas_stalls_its_partition_then_recovers(
    watched: tuple[StallWatchdog, Deliveries, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    watchdog, deliveries, clock = watched
    caplog.set_level(logging.INFO, logger="genres.observability.stalls")
    handler = ProduceErrors(watchdog, "publisher")
    sender = logging.getLogger(PRODUCER_LOGGER)
    sender.addHandler(handler)
    try:
        deliveries.started(TOPIC, 0)
        deliveries.acknowledged(TOPIC, 0)
        deliveries.started(TOPIC, 1)
        deliveries.acknowledged(TOPIC, 1)
        await watchdog.sample()
        deliveries.started(TOPIC, 1)  # waits: the client retries it
        refused(1)
        await watchdog.sample()
        await run(watchdog, clock, until=clock.now + 30)
        assert watchdog.stalls() == []  # waited exactly the bound
        refused(1)
        await run(watchdog, clock, until=clock.now + 5)
    finally:
        sender.removeHandler(handler)
    [stall] = watchdog.stalls()
    assert (stall.role, stall.topic, stall.partition, stall.waiting) == ("publisher", TOPIC, 1, 1)
    assert stall.reason.startswith("produce refused: NotEnoughReplicasError")
    with pytest.raises(PartitionsStalled, match=rf"publisher {TOPIC}\[1\] 1 sends unacknowledged"):
        await watchdog.check()
    assert gauge(watchdog) == {("publisher", TOPIC, "0"): 0.0, ("publisher", TOPIC, "1"): 1.0}
    [line] = stall_lines(caplog)
    assert line.getMessage().startswith(
        f"partition stalled: publisher {TOPIC}[1], 1 sends unacknowledged, none acknowledged "
        "for 35.0s: produce refused: NotEnoughReplicasError"
    )
    deliveries.acknowledged(TOPIC, 1)
    await run(watchdog, clock, until=clock.now + 5)
    assert watchdog.stalls() == []
    assert any("moving again" in r.getMessage() for r in caplog.records)


async def test_a_refused_send_keeps_its_partition_waiting_while_its_caller_backs_off(
    watched: tuple[StallWatchdog, Deliveries, Clock],
) -> None:
    watchdog, deliveries, clock = watched
    deliveries.started(TOPIC, 2)
    await watchdog.sample()
    for _ in range(4):  # the delivery times out, the caller waits, sends again
        clock.now += 8
        deliveries.ended(TOPIC, 2, KafkaTimeoutError())
        await watchdog.sample()
        clock.now += 2
        deliveries.started(TOPIC, 2)
        await watchdog.sample()
    [stall] = watchdog.stalls()
    assert stall.partition == 2


async def test_a_refusal_whose_caller_gave_up_is_forgotten_after_the_hold(
    watched: tuple[StallWatchdog, Deliveries, Clock],
) -> None:
    watchdog, deliveries, clock = watched
    deliveries.started(TOPIC, 1)
    deliveries.ended(TOPIC, 1, KafkaTimeoutError())
    assert deliveries.end(TOPIC, 1) == 1  # waits: its caller may send it again
    clock.now += REFUSAL_HOLD_SECONDS
    assert deliveries.end(TOPIC, 1) == deliveries.progress(TOPIC, 1) == 0
    await run(watchdog, clock, until=clock.now + 120)
    assert watchdog.stalls() == []


async def test_a_send_that_no_retry_cures_does_not_leave_its_partition_waiting(
    watched: tuple[StallWatchdog, Deliveries, Clock],
) -> None:
    watchdog, deliveries, clock = watched
    deliveries.started(TOPIC, 0)
    deliveries.ended(TOPIC, 0, MessageSizeTooLargeError())  # dead-lettered by its caller
    deliveries.started(TOPIC, 1)
    deliveries.ended(TOPIC, 1, asyncio.CancelledError())  # stopping
    await run(watchdog, clock, until=clock.now + 120)
    assert watchdog.stalls() == []


@dataclass
class Leaders:
    """The cluster's metadata as the watchdog asks it: which partitions lack a leader."""

    leaderless: set[PartitionKey] = field(default_factory=set)
    failure: Exception | None = None
    asked: list[set[str]] = field(default_factory=list)

    async def __call__(self, topics: Collection[str]) -> set[PartitionKey]:
        self.asked.append(set(topics))
        if self.failure is not None:
            raise self.failure
        return self.leaderless


async def test_an_idle_partition_without_a_leader_is_stalled_past_the_bound() -> None:
    clock = Clock()
    watchdog = StallWatchdog(30.0, clock=clock)
    source = Source({TopicPartition(TOPIC, 0): (4, 4), TopicPartition(TOPIC, 1): (7, 7)})
    watchdog.watch("projector", source)
    leaders = Leaders({(TOPIC, 1)})
    watchdog.watch_leaders(leaders)
    await watchdog.sample()
    await run(watchdog, clock, until=clock.now + 30)
    assert watchdog.stalls() == []
    await run(watchdog, clock, until=clock.now + 5)
    [stall] = watchdog.stalls()
    assert (stall.role, stall.partition, stall.offset, stall.reason) == (
        "projector",
        1,
        7,
        NO_LEADER,
    )
    assert leaders.asked[-1] == {TOPIC}
    leaders.leaderless = set()  # the cluster elected one
    await run(watchdog, clock, until=clock.now + 5)
    assert watchdog.stalls() == []


async def test_no_broker_answering_the_metadata_request_stalls_every_watched_partition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="genres.observability.stalls")
    clock = Clock()
    watchdog = StallWatchdog(30.0, clock=clock)
    watchdog.watch("projector", Source({TopicPartition(TOPIC, 0): (4, 4)}))
    deliveries = Deliveries()
    deliveries.started("track.genres_failed", 2)
    deliveries.acknowledged("track.genres_failed", 2)
    watchdog.watch("publisher", SendProgress(deliveries), writes=True)
    leaders = Leaders(failure=KafkaConnectionError("no broker answered a metadata request"))
    watchdog.watch_leaders(leaders)
    await watchdog.sample()
    await run(watchdog, clock, until=clock.now + 35)
    assert sorted((s.role, s.topic, s.partition) for s in watchdog.stalls()) == [
        ("projector", TOPIC, 0),
        ("publisher", "track.genres_failed", 2),
    ]
    assert {s.reason for s in watchdog.stalls()} == {
        "KafkaConnectionError: no broker answered a metadata request"
    }
    with pytest.raises(PartitionsStalled) as raised:
        await watchdog.check()
    assert str(raised.value) == (
        f"projector {TOPIC}[0], publisher track.genres_failed[2]: "
        "KafkaConnectionError: no broker answered a metadata request"
    )
    # One line for the cause, naming every partition it stalled.
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "partitions stalled: 2 without a leader for 35.0s: KafkaConnectionError: no broker "
        f"answered a metadata request: projector {TOPIC}[0], publisher track.genres_failed[2]"
    ]
    leaders.failure = None
    await run(watchdog, clock, until=clock.now + 5)
    assert watchdog.stalls() == []


@dataclass
class FakeCluster:
    available: set[int]

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.available


@dataclass
class FakeClient:
    cluster: FakeCluster


@dataclass
class FakeProducer:
    """The part of aiokafka's producer the publisher uses."""

    client: FakeClient
    partitions: set[int]
    failure: Exception | None = None
    sent: list[tuple[str, int, bytes | None]] = field(default_factory=list)

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    async def send_and_wait(self, topic: str, **options: Any) -> None:
        self.sent.append((topic, options["partition"], options["key"]))
        if self.failure is not None:
            raise self.failure


def publisher_on(producer: FakeProducer) -> Publisher:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9", genres_topic_prefix="p.")
    return Publisher(producer, settings)  # type: ignore[arg-type]


async def test_the_publisher_counts_each_send_on_the_partition_the_client_would_pick() -> None:
    producer = FakeProducer(FakeClient(FakeCluster({0, 1, 2, 3})), partitions={0, 1, 2, 3})
    publisher = publisher_on(producer)
    keys = [str(track).encode() for track in range(1, 40)]
    for key in keys:
        await publisher.send_and_wait("p.track.uploaded", value=b"{}", key=key)
    expected = [DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3]) for key in keys]
    assert [partition for _, partition, _ in producer.sent] == expected
    assert len(set(expected)) > 1
    for partition in range(4):
        count = expected.count(partition)
        assert publisher.deliveries.progress("p.track.uploaded", partition) == (
            count if count else None
        )
        if count:
            assert publisher.deliveries.end("p.track.uploaded", partition) == count


async def test_a_failed_send_is_reported_with_its_partition_and_stays_refused() -> None:
    producer = FakeProducer(
        FakeClient(FakeCluster({0, 1, 2})), partitions={0, 1, 2}, failure=KafkaTimeoutError()
    )
    publisher = publisher_on(producer)
    reported: list[tuple[BaseException, TopicPartition]] = []
    publisher.on_error = lambda error, partition: reported.append((error, partition))
    with pytest.raises(KafkaTimeoutError):
        await publisher.send_and_wait("p.track.genres_failed", value=b"{}", key=b"7")
    [(_, partition, _)] = producer.sent
    assert [(type(e), p) for e, p in reported] == [
        (KafkaTimeoutError, TopicPartition("p.track.genres_failed", partition))
    ]
    assert publisher.deliveries.progress("p.track.genres_failed", partition) == 0
    assert publisher.deliveries.end("p.track.genres_failed", partition) == 1


async def test_watch_publisher_wires_the_watchdog_and_undoes_it() -> None:
    producer = FakeProducer(FakeClient(FakeCluster({0})), partitions={0})
    publisher = publisher_on(producer)
    clock = Clock()
    watchdog = StallWatchdog(30.0, clock=clock)
    undo = watch_publisher(watchdog, publisher)
    sender = logging.getLogger(PRODUCER_LOGGER)
    assert any(isinstance(h, ProduceErrors) for h in sender.handlers)
    await publisher.send_and_wait("p.track.uploaded", value=b"{}", key=None)
    undo()
    assert not any(isinstance(h, ProduceErrors) for h in sender.handlers)
    assert list(watchdog.partitions()) == []
