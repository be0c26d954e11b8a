"""The stall watchdog's rule, on a fake clock and fake consumers (no broker, no waiting)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, UnsupportedCodecError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from genres.classifier.window import OffsetWindow
from genres.observability.progress import (
    CommittedProgress,
    LocalProgress,
    PositionProgress,
    SubscriberErrors,
)
from genres.observability.stalls import (
    NO_ERROR,
    PartitionsStalled,
    ProgressSource,
    StalledPartitions,
    StallWatchdog,
)

TOPIC = "track.genres_classified"
P0 = TopicPartition(TOPIC, 0)
P1 = TopicPartition(TOPIC, 1)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Source:
    """A consumer's partitions: (progress, end) each."""

    parts: dict[TopicPartition, tuple[int | None, int | None]] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return set(self.parts)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.parts[partition][1]

    async def progress(self, partition: TopicPartition) -> int | None:
        return self.parts[partition][0]


@dataclass
class FakeKafkaConsumer:
    """The part of aiokafka's consumer the sources read."""

    positions: dict[TopicPartition, int] = field(default_factory=dict)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    commits: dict[TopicPartition, int | None] = field(default_factory=dict)
    beginnings: dict[TopicPartition, int] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends.get(partition)

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.commits.get(partition)

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return {p: self.beginnings[p] for p in partitions}


def stall_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and r.getMessage().startswith("partition stalled")
    ]


def gauge(watchdog: StallWatchdog) -> dict[tuple[str, str, str], float]:
    registry = CollectorRegistry()
    registry.register(StalledPartitions(watchdog))
    page = generate_latest(registry).decode()
    return {
        (s.labels["role"], s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "genres_partition_stalled"
    }


async def run(watchdog: StallWatchdog, clock: Clock, until: float, step: float = 5.0) -> None:
    """Sample every ``step`` seconds of the fake clock up to ``until`` (inclusive)."""
    while clock.now + step <= until:
        clock.now += step
        await watchdog.sample()


async def sampled_once(
    clock: Clock,
    role: str,
    source: ProgressSource,
    bound: float = 30.0,
    patience: float | None = None,
) -> StallWatchdog:
    """A watchdog on ``clock`` with ``bound``, watching ``source`` as ``role``, sampled once."""
    watchdog = StallWatchdog(bound, clock=clock)
    watchdog.watch(role, source, patience=patience)
    await watchdog.sample()
    return watchdog


async def test_a_partition_that_does_not_move_turns_stalled_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="genres.observability.stalls")
    clock = Clock()
    source = Source({P0: (5, 8), P1: (3, 3)})
    start = clock.now
    watchdog = await sampled_once(clock, "projector", source)
    watchdog.note_error("projector", ConnectionRefusedError("connect call failed"))
    await run(watchdog, clock, start + 30)
    assert watchdog.stalls() == []  # waited exactly the bound: not longer
    await watchdog.check()
    assert gauge(watchdog) == {("projector", TOPIC, "0"): 0.0, ("projector", TOPIC, "1"): 0.0}

    # The handler retries: the same failure again.
    watchdog.note_error("projector", ConnectionRefusedError("connect call failed"))
    await run(watchdog, clock, start + 35)
    [stall] = watchdog.stalls()
    assert (stall.role, stall.topic, stall.partition, stall.offset, stall.waiting) == (
        "projector",
        TOPIC,
        0,
        5,
        3,
    )
    assert stall.reason == "ConnectionRefusedError: connect call failed"
    [line] = stall_lines(caplog)
    assert line.getMessage() == (
        f"partition stalled: projector {TOPIC}[0] at offset 5, 3 records waiting, no progress "
        "for 35.0s: ConnectionRefusedError: connect call failed"
    )
    fields = {k: vars(line)[k] for k in ("role", "topic", "partition", "offset", "reason")}
    assert fields == {
        "role": "projector",
        "topic": TOPIC,
        "partition": 0,
        "offset": 5,
        "reason": "ConnectionRefusedError: connect call failed",
    }
    assert gauge(watchdog) == {("projector", TOPIC, "0"): 1.0, ("projector", TOPIC, "1"): 0.0}
    with pytest.raises(PartitionsStalled, match=rf"projector {TOPIC}\[0\] at offset 5"):
        await watchdog.check()

    source.parts[P0] = (8, 8)
    clock.now += 5
    await watchdog.sample()
    assert watchdog.stalls() == []
    assert gauge(watchdog)[("projector", TOPIC, "0")] == 0.0
    await watchdog.check()
    assert any(
        r.levelno == logging.INFO and "moving again" in r.getMessage() for r in caplog.records
    )
    assert len(stall_lines(caplog)) == 1


async def test_the_error_line_repeats_at_a_slow_interval_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    watchdog = StallWatchdog(30.0, clock=clock, repeat_every=60.0)
    watchdog.watch("classifier", Source({P0: (0, 1)}))
    start = clock.now
    await watchdog.sample()
    # Sampled every second for 200 s, stalled from 31 s on.
    await run(watchdog, clock, start + 200, step=1.0)
    # At 31 s, 91 s and 151 s of the stall; not once a sample.
    assert [vars(line)["stalled_seconds"] for line in stall_lines(caplog)] == [31, 91, 151]


async def test_no_stall_while_nothing_waits_and_the_clock_starts_when_records_arrive() -> None:
    clock = Clock()
    source = Source({P0: (7, 7)})
    watchdog = await sampled_once(clock, "responder", source)
    await run(watchdog, clock, clock.now + 3600)
    assert watchdog.stalls() == []  # idle for an hour: nothing waits

    source.parts[P0] = (7, 9)  # records arrive, nothing moves
    arrived = clock.now + 5
    await run(watchdog, clock, arrived + 30)
    assert watchdog.stalls() == []
    await run(watchdog, clock, arrived + 35)
    [stall] = watchdog.stalls()
    assert stall.reason == NO_ERROR
    assert stall.seconds == 35


async def test_steady_progress_behind_a_backlog_is_not_a_stall() -> None:
    clock = Clock()
    source = Source({P0: (0, 1000)})
    watchdog = await sampled_once(clock, "projector", source)
    for step in range(1, 40):
        clock.now += 20  # one batch stored every 20 s, a backlog all along
        source.parts[P0] = (step * 10, 1000)
        await watchdog.sample()
        assert watchdog.stalls() == []


async def test_patience_for_slow_work_unless_the_consumer_reports_errors() -> None:
    clock = Clock()
    start = clock.now
    watchdog = await sampled_once(clock, "classifier", Source({P0: (4, 6)}), patience=150.0)
    await run(watchdog, clock, start + 150)
    assert watchdog.stalls() == []  # slow classifications, no error: within patience
    await run(watchdog, clock, start + 155)
    [stall] = watchdog.stalls()
    assert stall.reason == NO_ERROR

    start = clock.now
    erring = await sampled_once(clock, "classifier", Source({P0: (4, 6)}), patience=150.0)
    clock.now += 10
    erring.note_error("classifier", OSError("database unreachable"), P0)
    await run(erring, clock, start + 35)
    [stall] = erring.stalls()
    assert stall.reason == "OSError: database unreachable"


async def test_an_error_of_another_partition_is_not_the_reason() -> None:
    clock = Clock()
    watchdog = await sampled_once(clock, "classifier", Source({P0: (4, 6), P1: (2, 3)}))
    watchdog.note_error("classifier", OSError("record 2 failed"), P1)
    await run(watchdog, clock, clock.now + 35)
    reasons = {s.partition: s.reason for s in watchdog.stalls()}
    assert reasons == {0: NO_ERROR, 1: "OSError: record 2 failed"}


async def test_a_group_less_reader_that_cannot_fetch_is_stalled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader without a group: its position is its progress (the lz4 case of issue 11)."""
    clock = Clock()
    watchdog = StallWatchdog(5.0, clock=clock)
    reader = FakeKafkaConsumer(positions={P0: 12, P1: 40}, ends={P0: 15, P1: 40})
    watchdog.watch("genres-outcomes", PositionProgress(lambda: reader))
    await watchdog.sample()
    error = UnsupportedCodecError("Libraries for lz4 compression codec not found")
    for _ in range(6):  # the reader's fetch fails each second
        clock.now += 1
        watchdog.note_error("genres-outcomes", error)
        await watchdog.sample()
    [stall] = watchdog.stalls()
    assert (stall.role, stall.partition, stall.offset) == ("genres-outcomes", 0, 12)
    assert stall.reason.startswith("UnsupportedCodecError: ")
    assert "lz4" in stall_lines(caplog)[0].getMessage()

    reader.positions[P0] = 15  # the codec is installed: it reads on
    clock.now += 1
    await watchdog.sample()
    assert watchdog.stalls() == []


async def test_a_stopped_reader_owns_nothing_and_a_revoked_partition_leaves_the_gauge() -> None:
    clock = Clock()
    watchdog = StallWatchdog(5.0, clock=clock)
    consumer: FakeKafkaConsumer | None = FakeKafkaConsumer(positions={P0: 1}, ends={P0: 2})
    watchdog.watch("responder", PositionProgress(lambda: consumer))
    await watchdog.sample()
    await run(watchdog, clock, clock.now + 10, step=1.0)
    assert len(watchdog.stalls()) == 1
    consumer = None
    await watchdog.sample()
    assert watchdog.stalls() == []
    assert gauge(watchdog) == {}


async def test_committed_progress_falls_back_to_the_beginning_of_a_never_committed_partition() -> (
    None
):
    consumer = FakeKafkaConsumer(
        positions={P0: 500, P1: 9}, ends={P0: 500, P1: 9}, commits={P1: 9}, beginnings={P0: 0}
    )
    source = CommittedProgress(lambda: consumer)
    # The projector fetched the whole partition and is stuck storing it: the position says
    # nothing waits, the committed offset (none yet: the beginning) says 500 records do.
    assert await source.progress(P0) == 0
    assert await source.progress(P1) == 9


async def test_the_classifier_s_progress_is_its_commit_window_s_committed_prefix() -> None:
    window: OffsetWindow[TopicPartition] = OffsetWindow()
    consumer = FakeKafkaConsumer(positions={P0: 3, P1: 7}, ends={P0: 9, P1: 7})
    source = LocalProgress(lambda: consumer, window.progress)
    assert await source.progress(P1) == 7  # nothing fetched from it: the position
    for offset in (3, 4, 5):
        window.add(P0, offset)
    assert await source.progress(P0) == 3  # fetched, not finished: where they started
    window.finish(P0, 3)
    window.finish(P0, 5)
    assert await source.progress(P0) == 3  # finished but not committed yet
    window.committed(window.to_commit())
    assert await source.progress(P0) == 4  # 4 still runs (retrying in place, say)


async def test_a_sample_that_hangs_or_fails_keeps_what_was_known() -> None:
    clock = Clock()

    class Broken(Source):
        fail = False

        async def progress(self, partition: TopicPartition) -> int | None:
            if self.fail:
                raise KafkaError("coordinator not available")
            return await super().progress(partition)

    source = Broken({P0: (2, 4)})
    watchdog = await sampled_once(clock, "projector", source, bound=5.0)
    source.fail = True
    await run(watchdog, clock, clock.now + 10, step=1.0)
    [stall] = watchdog.stalls()
    assert stall.offset == 2


class FakeSubscriber:
    """Fails its fetch and logs it the way FastStream's consume loop does, in a task of its own
    (what ``fetching`` tells, as ``genres.kafka.entry.Subscribed`` does)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._loop: asyncio.Task[None] | None = None

    def consumer(self) -> None:
        return None

    def fetching(self) -> bool:
        return self._loop is not None and asyncio.current_task() is self._loop

    def get_msg(self) -> None:
        raise UnsupportedCodecError("no lz4")

    async def consume_loop(self) -> None:
        self._loop = asyncio.current_task()
        try:
            self.get_msg()
        except KafkaError as exc:
            self._logger.log(logging.ERROR, "Kafka error occurred", exc_info=exc)


async def test_faststream_fetch_errors_are_the_reason_of_the_subscriber_that_logged_them() -> None:
    clock = Clock()
    watchdog = StallWatchdog(5.0, clock=clock)
    logger = logging.getLogger("tests.stalls.faststream")
    projector, responder = FakeSubscriber(logger), FakeSubscriber(logger)
    handler = SubscriberErrors(watchdog, {"projector": projector, "responder": responder})
    logger.addHandler(handler)
    try:
        watchdog.watch("projector", Source({P0: (0, 3)}))
        watchdog.watch("responder", Source({P1: (0, 3)}))
        await watchdog.sample()
        clock.now += 3
        await asyncio.create_task(responder.consume_loop())
        await run(watchdog, clock, clock.now + 5, step=1.0)
    finally:
        logger.removeHandler(handler)
    reasons = {s.role: s.reason for s in watchdog.stalls()}
    assert reasons == {"projector": NO_ERROR, "responder": "UnsupportedCodecError: no lz4"}


async def test_the_projector_s_retries_report_each_failure_and_never_block_the_loop() -> None:
    """Its backoff ran ``time.sleep`` in the loop: heartbeats, /readyz and this watchdog froze."""
    import asyncio

    from genres.projector.entry import retrying

    attempts = 0
    noted: list[BaseException] = []
    others_ran_during_backoff = False

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionRefusedError("database away")
        return "stored"

    async def another_task() -> None:
        nonlocal others_ran_during_backoff
        while attempts < 2:
            if attempts == 1:
                others_ran_during_backoff = True
            await asyncio.sleep(0.005)

    other = asyncio.create_task(another_task())
    assert await retrying(flaky, what="projection", on_error=noted.append) == "stored"
    await other
    assert others_ran_during_backoff
    assert [str(e) for e in noted] == ["database away"]
