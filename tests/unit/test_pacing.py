"""The creation pacer on a virtual clock: the cap's even pace, convoy spacing, 429 pauses."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from genres.classify.pacing import (
    HEADROOM,
    MARGIN,
    CreationPacer,
    LocalSlotBook,
    creation_interval,
)

T = TypeVar("T")


class VirtualClock:
    """Time that moves only when every task waits for it: to the earliest wake-up."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), woken))
        await woken

    async def run(self, *work: Awaitable[T]) -> list[T]:
        tasks = [asyncio.ensure_future(item) for item in work]
        while True:
            for _ in range(20):  # let every task that can run, run until it sleeps
                await asyncio.sleep(0)
            if all(task.done() for task in tasks):
                return [task.result() for task in tasks]
            if not self._sleepers:
                raise AssertionError("tasks wait for something other than the clock")
            at, _, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, at)
            woken.set_result(None)

    def at(self, moment: float, action: Callable[[], object]) -> Awaitable[None]:
        """A task doing ``action()`` at ``moment``."""

        async def later() -> None:
            await self.sleep(moment - self.now)
            action()

        return later()


async def create(clock: VirtualClock, pacer: CreationPacer, start: float = 0.0) -> float:
    """One creation arriving at ``start``: the moment the pacer let it go."""
    if start:
        await clock.sleep(start)
    await pacer.acquire()
    return clock.now


async def creation_times(clock: VirtualClock, pacer: CreationPacer, count: int) -> list[float]:
    return sorted(await clock.run(*(create(clock, pacer) for _ in range(count))))


def most_in_any_window(times: list[float], window: float) -> int:
    """The most creations in any half-open window of ``window`` seconds."""
    most, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_creations_are_paced_evenly_from_the_first_one() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=600, clock=clock)  # 10 a second

    times = await creation_times(clock, pacer, 25)

    interval = 60.0 * (1 + MARGIN) / 600
    assert times[0] == 0.0  # the first creation does not wait
    assert [round(later - earlier, 9) for earlier, later in itertools.pairwise(times)] == [
        round(interval, 9)
    ] * 24  # no burst of a second's worth: one every 0.101 s from the start


async def test_a_backlog_never_puts_more_than_the_cap_in_any_window() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=600, clock=clock)

    times = await creation_times(clock, pacer, 2000)

    assert most_in_any_window(times, 60.0) <= 600
    # ... and the cap is used: within the margin of 600 a minute.
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 600 / 60 / (1 + MARGIN) - 1e-9 <= rate <= 10.0


async def test_a_low_limit_lets_one_through_and_the_next_a_window_later() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=6, clock=clock)

    times = await creation_times(clock, pacer, 3)

    assert times == pytest.approx([0.0, 10.1, 20.2])


async def test_a_429_pauses_every_creation_until_the_hint_passes() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=6000, clock=clock)
    pacer.throttled(30.0)

    times = await creation_times(clock, pacer, 3)

    assert times[0] == 30.0
    assert times == pytest.approx([30.0, 30.0101, 30.0202])


async def test_a_429_without_a_hint_pauses_one_second() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=6000, clock=clock)
    pacer.throttled(None)

    assert (await creation_times(clock, pacer, 1)) == [1.0]


async def test_slots_booked_before_a_429_move_later_by_the_pause_in_order() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=60, clock=clock)  # one every 1.01 s

    done = await clock.run(
        create(clock, pacer),
        create(clock, pacer),
        create(clock, pacer),
        create(clock, pacer, start=3.0),  # arrives during the pause
        clock.at(0.5, lambda: pacer.throttled(5.0)),
    )
    times = sorted(moment for moment in done if moment is not None)

    # The second and third held slots at 1.01 and 2.02: the pause (0.5 to 5.5) stopped the
    # schedule for 5 s, so they go at 6.01 and 7.02, still an interval apart (no burst at
    # 5.5), and the one that came during the pause takes the next slot.
    assert times == pytest.approx([0.0, 6.01, 7.02, 8.03])
    assert pacer.paused == 5.0


async def test_an_overlapping_429_stops_the_schedule_for_what_it_adds() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=60, clock=clock)

    done = await clock.run(
        create(clock, pacer),
        create(clock, pacer),
        create(clock, pacer),
        clock.at(0.5, lambda: pacer.throttled(5.0)),  # paused until 5.5
        clock.at(2.0, lambda: pacer.throttled(5.0)),  # until 7.0: 1.5 s more
        clock.at(3.0, lambda: pacer.throttled(1.0)),  # within the pause: nothing more
    )
    times = sorted(moment for moment in done if moment is not None)

    assert pacer.paused == pytest.approx(6.5)
    assert times == pytest.approx([0.0, 7.51, 8.52])


async def test_a_restart_on_the_same_book_continues_the_pace() -> None:
    clock = VirtualClock()
    book = LocalSlotBook(clock)  # what the database row is to processes
    first = CreationPacer(per_minute=600, clock=clock, book=book)
    before = await creation_times(clock, first, 5)

    restarted = CreationPacer(per_minute=600, clock=clock, book=book)
    after = await creation_times(clock, restarted, 5)

    assert after[0] - before[-1] == pytest.approx(creation_interval(600))
    assert most_in_any_window(before + after, 60.0) <= 600


async def test_without_an_observed_latency_creations_are_not_spaced() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=100_000, classifications_in_flight=10, clock=clock)

    times = await creation_times(clock, pacer, 10)

    assert pacer.spacing == 0.0
    assert times[-1] == pytest.approx(9 * creation_interval(100_000))


async def test_a_burst_is_spread_over_a_fraction_of_the_observed_latency() -> None:
    clock = VirtualClock()
    pacer = CreationPacer(per_minute=100_000, classifications_in_flight=10, clock=clock)
    pacer.observe(0.3)
    assert pacer.spacing == 0.3 / (10 * HEADROOM)

    times = await creation_times(clock, pacer, 10)

    # Ten creations that arrived together leave one spacing apart (not at once, nor slower
    # than classifications in flight / latency with headroom allows).
    assert times == pytest.approx([i * pacer.spacing for i in range(10)])


def test_a_slow_outlier_does_not_slow_creations_down() -> None:
    pacer = CreationPacer(per_minute=600, classifications_in_flight=4)
    for _ in range(20):
        pacer.observe(2.0)
    typical = pacer.spacing
    pacer.observe(120.0)  # a cold start
    assert pacer.spacing == typical == 2.0 / (4 * HEADROOM)


def test_the_spacing_follows_a_lasting_change_of_latency() -> None:
    pacer = CreationPacer(per_minute=600, classifications_in_flight=4)
    for _ in range(100):
        pacer.observe(2.0)
    for _ in range(100):
        pacer.observe(0.5)
    assert pacer.spacing == 0.5 / (4 * HEADROOM)


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        creation_interval(0)
