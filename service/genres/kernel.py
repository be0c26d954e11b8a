"""What every role is assembled from, and what an assembled role hands back.

The composition root (``genres.bootstrap``) builds the shared kernel's adapters once per
process (:class:`Kernel`: settings, engine, publisher, metrics, stall watchdog, and the broker
when a role subscribes) and asks each role it runs for its handle: the ``assemble`` function of
the role's ``assembly`` module builds all of that role's own adapters from the kernel and
returns a :class:`RoleHandle`. The root starts the handles in order and stops them in reverse;
a test passes its own kernel parts (fakes or real adapters) to ``bootstrap.running`` the same
way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from genres.config import Settings
from genres.kafka.producer import Publisher
from genres.observability.metrics import ServiceMetrics
from genres.observability.stalls import StallWatchdog

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from genres.kafka.entry import Subscribed

__all__ = ["STEP_SECONDS", "Kernel", "RoleHandle", "within"]

log = logging.getLogger(__name__)

#: What each stop may take (a broker that does not answer holds each one).
STEP_SECONDS = 4.0


@dataclass
class Kernel:
    """The shared adapters a role is built from; one of each per process."""

    settings: Settings
    engine: AsyncEngine
    publisher: Publisher
    metrics: ServiceMetrics
    watchdog: StallWatchdog
    make_broker: Callable[[], KafkaBroker]
    """Builds the process's FastStream broker, on the first role that subscribes."""
    _broker: KafkaBroker | None = field(default=None, init=False)

    def broker(self) -> KafkaBroker:
        """The process's broker, for a role's subscriber (the root starts it after the roles)."""
        if self._broker is None:
            self._broker = self.make_broker()
        return self._broker

    @property
    def subscribed_broker(self) -> KafkaBroker | None:
        """The broker, if a role subscribed on it."""
        return self._broker


class RoleHandle:
    """An assembled role: ``start`` runs it, ``stop`` undoes what ``start`` did, in reverse
    (also after a start that failed half-way), each step bounded where a broker may hang."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.subscribed: Subscribed | None = None
        """Its FastStream subscriber, when it rides on the kernel's broker."""
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        await self._start(self._stack)

    async def stop(self) -> None:
        await self._stack.aclose()

    async def _start(self, stack: AsyncExitStack) -> None:
        """Start the role's parts, pushing the undoing of each onto ``stack``."""


def within(
    seconds: float, what: str, stop: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """``stop``, given up after ``seconds`` with a WARNING: a broker that does not answer
    must not hold the exit (what was not committed is redelivered)."""

    async def bounded() -> None:
        try:
            async with asyncio.timeout(seconds):
                await stop()
        except TimeoutError:
            log.warning("%s did not stop within %gs: left unfinished", what, seconds)

    return bounded
