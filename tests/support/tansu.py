"""The fault tests' Tansu: a broker they can freeze, kill and restart.

Tansu keeps everything in memory: a :meth:`TansuUnderTest.restart` comes back on the same port
but **empty** (no topics, no records, no committed offsets).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Self

from genres.embedded import EmbeddedBroker


class TansuUnderTest(EmbeddedBroker):
    """An :class:`EmbeddedBroker` with the controls of the fault tests."""

    @property
    def frozen(self) -> bool:
        return self._frozen

    def restart(self, *, down_for: float = 0.0) -> Self:
        """Stop and start again on the same port. Tansu's memory storage comes back empty."""
        self._requested_port = self._port  # keep the port from now on
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        return self.start()

    async def arestart(self, *, down_for: float = 0.0) -> Self:
        self._requested_port = self._port
        await self.astop()
        if down_for > 0:
            await asyncio.sleep(down_for)
        return await self.astart()

    def kill(self) -> None:
        """SIGKILL the broker (a crash)."""
        self._kill()
        self._frozen = False

    def freeze(self) -> None:
        """SIGSTOP the broker: connections stay open but nothing is answered."""
        if self.pid is None:
            raise RuntimeError("the broker is not running")
        self._signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT a frozen broker."""
        self._signal(signal.SIGCONT)
        self._frozen = False
