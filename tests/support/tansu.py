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
from tests.support import freezing


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
        """SIGSTOP the broker and wait until it is stopped: connections stay open but nothing
        is answered from the moment this returns."""
        pid = self.pid
        if pid is None:
            raise RuntimeError("the broker is not running")
        self._frozen = True  # first: stopping must continue it, even if the wait fails
        freezing.freeze(pid)

    def thaw(self) -> None:
        """SIGCONT a frozen broker."""
        self._signal(signal.SIGCONT)
        self._frozen = False
