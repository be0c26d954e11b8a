"""The creation pacer: an even pace, and a shared pause after a 429."""

from __future__ import annotations

import asyncio
import time

from genres.classify.pacing import CreationPacer


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
