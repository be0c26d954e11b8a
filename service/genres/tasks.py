"""Background tasks: the one way the service keeps tasks it does not await, and the one way it
cancels a task and waits for its end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (nothing when ``None``) and wait until it has ended; its cancellation
    is the expected end, not an error (a cancellation of the caller still propagates)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        # The task's end, unless the waiter itself is being cancelled (a stop bounded by a
        # timeout): then it must end too.
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class BackgroundTasks:
    """Tasks started and not awaited where they start: each kept referenced until it ends (the
    event loop holds only a weak reference), a failure logged as a warning, and the ones still
    running waited for, bounded, at close."""

    def __init__(self, failure: str, logger: logging.Logger) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()
        self._failure = failure
        self._log = logger

    def add(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def wait(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.warning("%s: %s", self._failure, exc)
