"""Pacing prediction creations: never over the account's cap, never in convoys.

Replicate allows 600 creations a minute per account (far fewer for accounts with little
credit) and counts them in a sliding window. The pacer gives every creation a slot at least
``window * (1 + margin) / per_minute`` seconds after the previous one: an even pace from the
first second (no burst of a minute's worth and then a pause), under which no window of
``window`` seconds ever holds more than ``per_minute`` creations. The margin (1%) absorbs the
jitter between the moment a slot is due and the moment Replicate sees the request: two
creations ``per_minute`` slots apart must arrive a full window apart.

Slots come from a :class:`SlotBook`. In the service it is a row in PostgreSQL
(``genres.database.pace``) shared by every classifier process on the same account: the pace is
the account's, not the process's, and a restarted process continues it instead of starting
with a burst. Without a database (``genres classify``) the book is this process's memory.

A 429 pauses every creation in the process until the server's reset hint has passed, instead
of letting each in-flight classification find out for itself. The pause stops the schedule's
clock: every slot booked and not yet used moves later by the pause, in order, and so does the
book (other processes' next slots too). Skipped slots are not made up with a burst afterwards:
that burst would put more than the cap in the windows that start inside the pause.

The pacer also spaces creations by a fraction of the predictions' typical latency (the lower
quartile of the last 100: a cold start or a slow track must not slow the others) divided by
the classifications in flight. Records that start together (a burst of uploads, a batch of
claims) otherwise finish together, then free their slots together and start the next ones
together: the classifier runs in convoys whose every member waits for the whole convoy's CPU
work, cycle after cycle (measured: 150 classifications/s of an ideal 256, with the process 44%
busy). Spaced, the convoy dissolves in one cycle. The spacing allows 1.5 times the throughput
of the classifications in flight, so it never holds a steady stream back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Protocol

HEADROOM = 1.5
"""Spacing allows this many times ``classifications_in_flight / latency`` creations a second."""
LATENCIES_KEPT = 100
"""Recent latencies the typical one is taken from."""
WINDOW_SECONDS = 60.0
"""Replicate's window: creations are counted per minute."""
MARGIN = 0.01
"""Slots are this much further apart than the cap strictly needs (jitter on the way)."""
DEFAULT_PAUSE = 1.0
"""Pause after a 429 without a reset hint."""


class Clock(Protocol):
    """A monotonic time source and a sleep on it (tests inject a virtual one)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.monotonic`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SlotBook(Protocol):
    """Where creation slots are booked, one after another."""

    async def book(self, interval: float) -> float:
        """Book the next slot, ``interval`` seconds after the last one booked (or now, if that
        one is older); return the seconds from now until the slot."""
        ...

    def shift(self, seconds: float) -> None:
        """Move the schedule ``seconds`` later (a pause): the next slot is that much after the
        last one booked, or after now if that one is older."""

    async def aclose(self) -> None: ...


class LocalSlotBook:
    """Slots in this process's memory: the pace of one process, forgotten when it exits."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next = -math.inf

    async def book(self, interval: float) -> float:
        now = self._clock.monotonic()
        at = max(self._next, now)
        self._next = at + interval
        return at - now

    def shift(self, seconds: float) -> None:
        self._next = max(self._next, self._clock.monotonic()) + seconds

    async def aclose(self) -> None:
        return None


def creation_interval(
    per_minute: int, *, window: float = WINDOW_SECONDS, margin: float = MARGIN
) -> float:
    """Seconds between two creation slots for a cap of ``per_minute`` per ``window``."""
    if per_minute < 1:
        raise ValueError("the cap must allow at least one creation per window")
    return window * (1.0 + margin) / per_minute


class CreationPacer:
    """``acquire()`` before each creation; ``throttled(seconds)`` after a 429.

    ``window`` and ``margin`` exist for tests that scale Replicate's minute down.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        classifications_in_flight: int | None = None,
        book: SlotBook | None = None,
        window: float = WINDOW_SECONDS,
        margin: float = MARGIN,
        clock: Clock | None = None,
    ) -> None:
        self.interval = creation_interval(per_minute, window=window, margin=margin)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._book: SlotBook = book if book is not None else LocalSlotBook(self._clock)
        self._paused_until = -math.inf
        self.paused = 0.0
        """Seconds the schedule was stopped by 429s (overlapping pauses counted once)."""
        self._in_flight = classifications_in_flight
        self._latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self._latency: float | None = None
        self._next_at = -math.inf

    @property
    def spacing(self) -> float:
        """Convoy-breaking seconds between two creations (0 until a latency was observed)."""
        if not self._in_flight or self._latency is None:
            return 0.0
        return self._latency / (self._in_flight * HEADROOM)

    def observe(self, latency: float) -> None:
        """A prediction took ``latency`` seconds from creation to output."""
        self._latencies.append(latency)
        recent = sorted(self._latencies)
        self._latency = recent[len(recent) // 4]

    async def acquire(self) -> None:
        clock = self._clock
        while (wait := self._paused_until - clock.monotonic()) > 0:
            await clock.sleep(wait)
        # The convoy spacing comes before the booking: a delay after it would bring two slots
        # a window apart closer than that.
        if spacing := self.spacing:
            now = clock.monotonic()
            at = max(now, self._next_at)
            self._next_at = at + spacing
            if at > now:
                await clock.sleep(at - now)
        paused = self.paused
        delay = await self._book.book(self.interval)
        at = clock.monotonic() + delay
        # A slot still ahead when a pause begins moves later by the pause.
        while (wait := at + (self.paused - paused) - clock.monotonic()) > 0:
            await clock.sleep(wait)

    def throttled(self, retry_after: float | None) -> None:
        """The server said 429: no creation until its hint (1 s without one) has passed."""
        seconds = DEFAULT_PAUSE if retry_after is None else max(0.0, retry_after)
        now = self._clock.monotonic()
        until = now + seconds
        if until <= self._paused_until:
            return
        # Only what lies beyond the pause already under way stops the schedule further.
        extension = until - max(now, self._paused_until)
        self._paused_until = until
        self.paused += extension
        self._book.shift(extension)

    async def aclose(self) -> None:
        await self._book.aclose()
