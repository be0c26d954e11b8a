"""A consumer group without a working coordinator, on a fake clock: stalled even when idle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from genres.observability.groups import LOST, UNKNOWN, StalledGroups
from genres.observability.progress import CommittedProgress, PositionProgress, coordination
from genres.observability.stalls import PartitionsStalled, StallWatchdog
from tests.unit.test_stalls import Clock, FakeKafkaConsumer, run

GROUP = "genres-projector"
P0 = TopicPartition("track.genres_classified", 0)


class FakeCoordinator:
    """aiokafka's ``GroupCoordinator`` as far as it is read: the coordinator's node (None once
    marked dead) and the future a loss completes, made anew when a coordinator is found."""

    def __init__(self, group_id: str = GROUP) -> None:
        self.group_id = group_id
        self._session_timeout_ms = 10_000
        self.coordinator_id: int | None = None
        self._coordinator_dead_fut: asyncio.Future[None] = _future()

    def found(self, node: int) -> None:
        self.coordinator_id = node
        self._coordinator_dead_fut = _future()

    def dead(self) -> None:
        if self.coordinator_id is not None:
            self.coordinator_id = None
            self._coordinator_dead_fut.set_result(None)


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


class GroupConsumer(FakeKafkaConsumer):
    def __init__(self, coordinator: Any) -> None:
        super().__init__(positions={P0: 4}, ends={P0: 4}, commits={P0: 4})
        self._coordinator = coordinator


def group_gauge(watchdog: StallWatchdog) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(StalledGroups(watchdog.groups))
    page = generate_latest(registry).decode()
    return {
        (s.labels["role"], s.labels["group"]): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "genres_group_stalled"
    }


def group_lines(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.getMessage().startswith(("group stalled", "group coordinator"))
    ]


async def watched(coordinator: FakeCoordinator, clock: Clock, bound: float = 30.0) -> StallWatchdog:
    watchdog = StallWatchdog(bound, clock=clock, repeat_every=60.0)
    consumer = GroupConsumer(coordinator)
    watchdog.watch("projector", CommittedProgress(lambda: consumer))
    await watchdog.sample()
    return watchdog


async def test_an_idle_group_whose_coordinator_is_not_found_turns_stalled_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="genres.observability.stalls")
    clock = Clock()
    coordinator = FakeCoordinator()
    coordinator.found(1)
    start = clock.now
    watchdog = await watched(coordinator, clock)
    assert group_gauge(watchdog) == {("projector", GROUP): 0.0}

    coordinator.dead()  # its __consumer_offsets partition lost its leader: never found again
    lost = clock.now + 5
    await run(watchdog, clock, lost + 30)
    assert watchdog.groups.stalls() == []  # lost exactly the bound: not longer
    await watchdog.check()

    await run(watchdog, clock, lost + 35)
    [stall] = watchdog.groups.stalls()
    assert (stall.role, stall.group, stall.seconds, stall.reason) == (
        "projector",
        GROUP,
        35.0,
        UNKNOWN,
    )
    assert watchdog.stalls() == []  # no partition is stalled: nothing waits
    assert group_gauge(watchdog) == {("projector", GROUP): 1.0}
    with pytest.raises(PartitionsStalled, match=f"projector group {GROUP}: no coordinator found"):
        await watchdog.check()
    assert group_lines(caplog) == [
        f"group stalled: projector group {GROUP} without a working coordinator for 35.0s: "
        + UNKNOWN
    ]

    # Repeated at the slow interval only, not at every sample.
    await run(watchdog, clock, lost + 120)
    assert len(group_lines(caplog)) == 2

    coordinator.found(2)
    clock.now += 5
    await watchdog.sample()
    # Found again: well once the same coordinator has stayed for longer than the bound.
    found = clock.now
    await run(watchdog, clock, found + 30)
    [stall] = watchdog.groups.stalls()
    assert stall.reason == UNKNOWN
    assert len(group_lines(caplog)) == 3  # at 35 s, 95 s and 155 s
    await run(watchdog, clock, found + 35)
    assert watchdog.groups.stalls() == []
    assert group_gauge(watchdog) == {("projector", GROUP): 0.0}
    await watchdog.check()
    assert group_lines(caplog, logging.INFO) == [
        f"group coordinator available again: projector group {GROUP}"
    ]
    assert clock.now - start > 120


async def test_a_coordinator_found_and_lost_again_at_every_sample_is_stalled() -> None:
    clock = Clock()
    coordinator = FakeCoordinator()
    coordinator.found(1)
    watchdog = await watched(coordinator, clock)
    # Heartbeats refused (COORDINATOR_NOT_AVAILABLE): marked dead, found again at once, so a
    # coordinator is known at each sample, never the same one twice.
    for _ in range(8):
        coordinator.dead()
        coordinator.found(1)
        clock.now += 5
        await watchdog.sample()
    [stall] = watchdog.groups.stalls()
    assert stall.reason == LOST.format(count=8)
    assert stall.seconds == 35.0  # since the first of those samples
    with pytest.raises(PartitionsStalled, match="coordinator was lost 8 times"):
        await watchdog.check()


async def test_a_coordinator_that_moves_once_within_the_bound_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    coordinator = FakeCoordinator()
    coordinator.found(0)
    watchdog = await watched(coordinator, clock, bound=3.0)
    coordinator.dead()  # its broker failed over
    clock.now += 0.6
    await watchdog.sample()
    clock.now += 2.0
    coordinator.found(1)
    await run(watchdog, clock, clock.now + 60, step=0.6)
    assert watchdog.groups.stalls() == []
    assert group_gauge(watchdog) == {("projector", GROUP): 0.0}
    assert group_lines(caplog) == []
    await watchdog.check()


async def test_a_coordinator_refused_every_few_seconds_is_stalled_between_refusals() -> None:
    # Seen on the cluster: found again at once and refused at a later heartbeat, every ~8 s,
    # while the watchdog samples every 0.6 s (bound 3 s).
    clock = Clock()
    coordinator = FakeCoordinator()
    coordinator.found(0)
    watchdog = await watched(coordinator, clock, bound=3.0)
    start = clock.now
    stalled_at = None
    for tick in range(1, 60):
        if tick % 13 == 0:
            coordinator.dead()
            coordinator.found(0)
        clock.now = start + tick * 0.6
        await watchdog.sample()
        if stalled_at is None and watchdog.groups.stalls():
            stalled_at = tick
    # The second refusal (tick 26) makes it stalled; it stays so while refusals go on.
    assert stalled_at == 26
    [stall] = watchdog.groups.stalls()
    assert stall.reason == LOST.format(count=4)
    # No refusal for longer than the session (10 s, over the bound): well again.
    refused = clock.now - (59 - 52) * 0.6
    await run(watchdog, clock, refused + 9.6, step=0.6)
    assert watchdog.groups.stalls() != []
    await run(watchdog, clock, refused + 10.8, step=0.6)
    assert watchdog.groups.stalls() == []


async def test_two_failovers_further_apart_than_a_session_change_nothing() -> None:
    clock = Clock()
    coordinator = FakeCoordinator()
    coordinator.found(0)
    watchdog = await watched(coordinator, clock, bound=3.0)
    for node in (1, 2):
        coordinator.dead()
        coordinator.found(node)
        await run(watchdog, clock, clock.now + 12.0, step=0.5)
        assert watchdog.groups.stalls() == []


async def test_a_group_unknown_since_the_start_is_stalled_past_the_bound() -> None:
    clock = Clock()
    watchdog = await watched(FakeCoordinator(), clock)  # never found
    await run(watchdog, clock, clock.now + 35)
    [stall] = watchdog.groups.stalls()
    assert stall.reason == UNKNOWN


async def test_unwatching_forgets_the_group(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="genres.observability.stalls")
    clock = Clock()
    watchdog = await watched(FakeCoordinator(), clock)
    await run(watchdog, clock, clock.now + 35)
    assert group_gauge(watchdog) == {("projector", GROUP): 1.0}
    watchdog.unwatch("projector")
    assert group_gauge(watchdog) == {}
    await watchdog.check()
    assert any(f"no longer watched: projector group {GROUP}" in m for m in caplog.messages)


async def test_group_less_readers_and_unstarted_consumers_have_no_group() -> None:
    clock = Clock()
    watchdog = StallWatchdog(30.0, clock=clock)
    reader = FakeKafkaConsumer(positions={P0: 1}, ends={P0: 1})
    watchdog.watch("outcomes", PositionProgress(lambda: reader))
    await run(watchdog, clock, clock.now + 100)
    assert group_gauge(watchdog) == {}
    await watchdog.check()
    # aiokafka's NoGroupCoordinator (no group_id); a consumer not started (no coordinator)
    assert coordination(GroupConsumer(object())) is None
    assert coordination(GroupConsumer(None)) is None
    assert coordination(None) is None


async def test_coordination_reads_the_coordinators_state() -> None:
    coordinator = FakeCoordinator("genres-classifier")
    consumer = GroupConsumer(coordinator)
    before = coordination(consumer)
    assert before is not None
    assert (before.group, before.known, before.session) == ("genres-classifier", False, 10.0)
    coordinator.found(2)
    found = coordination(consumer)
    assert found is not None
    assert found.known
    assert found.epoch is not before.epoch
    coordinator.dead()
    lost = coordination(consumer)
    assert lost is not None
    assert not lost.known
    assert lost.epoch is found.epoch
