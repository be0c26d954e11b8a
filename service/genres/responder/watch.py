"""A waiting request's view of the outcomes, timed on an injected clock.

``Watch`` collects one track's outcomes from the moment it is registered (before the track
is read, so an outcome published in between is kept) and answers ``wait(file_id, within)``.
Its time comes from a ``Clock``: the event loop's in the service, a clock the test moves in
tests/unit, so the ``wait_ms`` rule is checked without sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from genres.responder.rule import Outcome

__all__ = ["Clock", "LoopClock", "Watch"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def wait_until(self, event: asyncio.Event, deadline: float) -> None:
        """Return once ``event`` is set or ``deadline`` (on ``now``'s scale) has passed."""
        ...


class LoopClock:
    """The running event loop's clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait_until(self, event: asyncio.Event, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await event.wait()
        except TimeoutError:
            return


class Watch:
    """Collects one track's outcomes from the moment it is registered."""

    __slots__ = ("_changed", "_clock", "_outcomes")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._outcomes: list[Outcome] = []
        self._changed = asyncio.Event()

    def offer(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._changed.set()

    async def wait(self, file_id: str, within: float) -> Outcome | None:
        """The first outcome for ``file_id`` offered since the watch began, waiting at most
        ``within`` seconds for one; None when the time is up first."""
        deadline = self._clock.now() + within
        while True:
            for outcome in self._outcomes:
                if outcome.file_id == file_id:
                    return outcome
            if self._clock.now() >= deadline:
                return None
            self._changed.clear()
            await self._clock.wait_until(self._changed, deadline)
