"""Pacing prediction creations so that bursts do not become 429 storms, nor convoys.

Replicate allows 600 creations a minute (far fewer for accounts with little credit). The
pacer spreads creations evenly (a leaky bucket that holds about one second's worth), and a
429 pauses every creation in the process until the server's reset hint has passed, instead of
letting each in-flight classification find out for itself.

It also spaces creations by a fraction of the predictions' typical latency (the lower quartile
of the last 100: a cold start or a slow track must not slow the others) divided by the
concurrency. Records that start together (a burst of uploads, a batch of claims) otherwise
finish together, then free their slots together and start the next ones together: the
classifier runs in convoys whose every member waits for the whole convoy's CPU work, cycle
after cycle (measured: 150 classifications/s of an ideal 256, with the process 44% busy).
Spaced, the convoy dissolves in one cycle. The spacing allows 1.5 times the concurrency's
throughput, so it never holds a steady stream back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from aiolimiter import AsyncLimiter

HEADROOM = 1.5
"""Spacing allows this many times ``concurrency / latency`` creations a second."""
LATENCIES_KEPT = 100
"""Recent latencies the typical one is taken from."""


class CreationPacer:
    """``acquire()`` before each creation; ``throttled(seconds)`` after a 429."""

    def __init__(self, per_minute: int, *, concurrency: int | None = None) -> None:
        # aiolimiter needs a bucket of at least one; low limits get a longer window.
        window = max(1.0, 60.0 / per_minute)
        self._limiter = AsyncLimiter(max_rate=per_minute * window / 60.0, time_period=window)
        self._paused_until = 0.0
        self.paused_total = 0.0
        self._concurrency = concurrency
        self._latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self._latency: float | None = None
        self._next_at = 0.0

    @property
    def spacing(self) -> float:
        """Seconds between two creations (0 until a prediction's latency was observed)."""
        if not self._concurrency or self._latency is None:
            return 0.0
        return self._latency / (self._concurrency * HEADROOM)

    def observe(self, latency: float) -> None:
        """A prediction took ``latency`` seconds from creation to output."""
        self._latencies.append(latency)
        recent = sorted(self._latencies)
        self._latency = recent[len(recent) // 4]

    async def acquire(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            self.paused_total += wait
            await asyncio.sleep(wait)
        await self._limiter.acquire()
        if spacing := self.spacing:
            now = time.monotonic()
            at = max(now, self._next_at)
            self._next_at = at + spacing
            if at > now:
                await asyncio.sleep(at - now)

    def throttled(self, retry_after: float | None) -> None:
        """The server said 429: hold every creation until its hint (1 s without one) passed."""
        until = time.monotonic() + (1.0 if retry_after is None else retry_after)
        self._paused_until = max(self._paused_until, until)
