"""Pacing prediction creations so that bursts do not become 429 storms.

Replicate allows 600 creations a minute (far fewer for accounts with little credit). The
pacer spreads creations evenly (a leaky bucket that holds about one second's worth), and a
429 pauses every creation in the process until the server's reset hint has passed, instead of
letting each in-flight classification find out for itself.
"""

from __future__ import annotations

import asyncio
import time

from aiolimiter import AsyncLimiter


class CreationPacer:
    """``acquire()`` before each creation; ``throttled(seconds)`` after a 429."""

    def __init__(self, per_minute: int) -> None:
        # aiolimiter needs a bucket of at least one; low limits get a longer window.
        window = max(1.0, 60.0 / per_minute)
        self._limiter = AsyncLimiter(max_rate=per_minute * window / 60.0, time_period=window)
        self._paused_until = 0.0
        self.paused_total = 0.0

    async def acquire(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            self.paused_total += wait
            await asyncio.sleep(wait)
        await self._limiter.acquire()

    def throttled(self, retry_after: float | None) -> None:
        """The server said 429: hold every creation until its hint (1 s without one) passed."""
        until = time.monotonic() + (1.0 if retry_after is None else retry_after)
        self._paused_until = max(self._paused_until, until)
