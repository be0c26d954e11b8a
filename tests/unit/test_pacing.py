"""The creation pacer: an even pace, and a shared pause after a 429."""

from __future__ import annotations

import asyncio
import itertools
import time

from genres.classify.pacing import HEADROOM, CreationPacer


async def test_creations_are_spread_to_the_configured_rate() -> None:
    pacer = CreationPacer(per_minute=600)  # 10 a second
    started = time.monotonic()
    for _ in range(25):
        await pacer.acquire()
    elapsed = time.monotonic() - started
    # A burst of ~10 passes at once; the other 15 take ~1.5 s at 10/s.
    assert 1.2 <= elapsed <= 3.0


async def test_a_low_limit_still_lets_one_through_and_then_waits() -> None:
    pacer = CreationPacer(per_minute=6)
    started = time.monotonic()
    await pacer.acquire()
    assert time.monotonic() - started < 0.2
    try:
        await asyncio.wait_for(pacer.acquire(), timeout=0.5)
    except TimeoutError:
        pass
    else:
        raise AssertionError("a second creation within 10 s should wait")


async def test_a_429_pauses_every_creation_until_the_hint_passes() -> None:
    pacer = CreationPacer(per_minute=6000)
    pacer.throttled(0.5)
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert time.monotonic() - started >= 0.45


async def test_without_an_observed_latency_creations_are_not_spaced() -> None:
    pacer = CreationPacer(per_minute=100_000, concurrency=10)
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire() for _ in range(10)))
    assert pacer.spacing == 0.0
    assert time.monotonic() - started < 0.05


async def test_a_burst_is_spread_over_a_fraction_of_the_observed_latency() -> None:
    pacer = CreationPacer(per_minute=100_000, concurrency=10)
    pacer.observe(0.3)
    assert pacer.spacing == 0.3 / (10 * HEADROOM)

    times: list[float] = []

    async def create() -> None:
        await pacer.acquire()
        times.append(time.monotonic())

    await asyncio.gather(*(create() for _ in range(10)))
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Ten creations that arrived together leave one spacing apart (not at once, nor slower
    # than concurrency / latency with headroom allows).
    assert min(gaps) >= pacer.spacing * 0.8
    assert times[-1] - times[0] <= 0.3


def test_a_slow_outlier_does_not_slow_creations_down() -> None:
    pacer = CreationPacer(per_minute=600, concurrency=4)
    for _ in range(20):
        pacer.observe(2.0)
    typical = pacer.spacing
    pacer.observe(120.0)  # a cold start
    assert pacer.spacing == typical == 2.0 / (4 * HEADROOM)


def test_the_spacing_follows_a_lasting_change_of_latency() -> None:
    pacer = CreationPacer(per_minute=600, concurrency=4)
    for _ in range(100):
        pacer.observe(2.0)
    for _ in range(100):
        pacer.observe(0.5)
    assert pacer.spacing == 0.5 / (4 * HEADROOM)
