"""The pace of Replicate prediction creations, kept in PostgreSQL for the whole account.

Replicate's cap (600 creations a minute) is the account's, whatever the number of classifier
processes and however often they restart. Each process books its creations' slots in one row
of ``replicate_pace`` (the account's: a digest of its token): a booking moves the row's
``next_at`` one interval past ``greatest(next_at, now)`` and returns how long to wait for the
slot. Every slot is thus an interval after the previous one, whichever process booked it, and a
restarted process continues from the row instead of bursting.

Times are the database's clock (``clock_timestamp()``), so the processes' clocks need not
agree; a process only adds the wait to its own monotonic clock. Concurrent bookings of one
process run as one statement (``database/batching.py``), so the cost is a round trip per batch,
not per creation (measured in ``bench pipeline``; docs/decisions/0004).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from genres.database.batching import Batcher
from genres.database.engine import connect_pool
from genres.tasks import BackgroundTasks

log = logging.getLogger(__name__)

# `next_at - total` is where this batch's first slot starts: the old `next_at`, or now when
# that has passed. The answer is how far ahead of now the row's new `next_at` lies.
_BOOK = """
    INSERT INTO replicate_pace AS p (account, next_at)
    VALUES ($1, clock_timestamp() + make_interval(secs => $2::float8))
    ON CONFLICT (account) DO UPDATE
        SET next_at = greatest(p.next_at, clock_timestamp()) + make_interval(secs => $2::float8)
    RETURNING extract(epoch FROM p.next_at - clock_timestamp())::float8 AS ahead
"""

# A pause: the schedule moves later by it, whoever booked the slots after the row's now.
_SHIFT = """
    INSERT INTO replicate_pace AS p (account, next_at)
    VALUES ($1, clock_timestamp() + make_interval(secs => $2::float8))
    ON CONFLICT (account) DO UPDATE
        SET next_at = greatest(p.next_at, clock_timestamp()) + make_interval(secs => $2::float8)
"""

POOL_SIZE = 2
"""Bookings of one process are batched; two statements in flight are plenty."""
SHIFT_TIMEOUT_SECONDS = 5.0


def account_of(token: str) -> str:
    """The row of an account: a digest of its token (the token itself is never stored)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


@dataclass(eq=False, slots=True)
class _Booking:
    interval: float


class DatabaseSlotBook:
    """A :class:`genres.classify.pacing.SlotBook` shared through ``replicate_pace``."""

    def __init__(self, pool: asyncpg.Pool, account: str, *, owns_pool: bool = False) -> None:
        self._pool = pool
        self._account = account
        self._owns_pool = owns_pool
        # Every booking is its own item: the batch books them all, one after another.
        self._bookings: Batcher[_Booking, float] = Batcher(self._book_many, key=id)
        self._shifts = BackgroundTasks(
            "could not share a replicate pause through the database", log
        )

    @classmethod
    async def connect(cls, database_url: str, account: str) -> DatabaseSlotBook:
        """A book on a small pool of its own (closed by :meth:`aclose`)."""
        pool = await connect_pool(database_url, size=POOL_SIZE)
        return cls(pool, account, owns_pool=True)

    @property
    def statements(self) -> int:
        """Booking statements run so far (bookings - statements = round trips saved)."""
        return self._bookings.batches

    async def book(self, interval: float) -> float:
        return await self._bookings.submit(_Booking(interval))

    async def _book_many(self, items: Sequence[_Booking]) -> list[float]:
        intervals = [item.interval for item in items]
        ahead = await self._pool.fetchval(_BOOK, self._account, sum(intervals))
        # Slot i starts where the intervals after it, up to the row's new next_at, end.
        after = list(itertools.accumulate(reversed(intervals)))[::-1]
        return [float(ahead) - rest for rest in after]

    def shift(self, seconds: float) -> None:
        # Not awaited: the pause starts at once in this process; the other processes' next
        # bookings see it moments later (their slots already booked do not move: they learn
        # of the pause from their own 429s).
        task = asyncio.ensure_future(
            self._pool.execute(_SHIFT, self._account, seconds, timeout=SHIFT_TIMEOUT_SECONDS)
        )
        self._shifts.add(task)

    async def aclose(self) -> None:
        await self._shifts.wait(timeout=SHIFT_TIMEOUT_SECONDS)
        await self._bookings.close()
        if self._owns_pool:
            await self._pool.close()
