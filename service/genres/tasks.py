"""Ending a background task: the one way the service cancels a task and waits for its end."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (nothing when ``None``) and wait until it has ended; its cancellation
    is the expected end, not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
