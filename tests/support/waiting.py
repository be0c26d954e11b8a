"""Waiting for a condition in tests, with a deadline instead of a fixed sleep: the one polling
loop of the test support (and of the fault scenarios)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[bool] | bool]


async def eventually(
    check: Check,
    *,
    within: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
    diagnose: Callable[[], str] | None = None,
) -> float:
    """Poll ``check`` every ``interval`` until it is true and return the seconds that took;
    fail after ``within`` seconds, with ``diagnose()`` in the message when given."""
    waited = await _poll(check, within, interval)
    if waited is None:
        extra = f"\n{diagnose()}" if diagnose is not None else ""
        raise AssertionError(f"timed out after {within:g}s waiting for {what}{extra}")
    return waited


async def holds_within(check: Check, *, within: float, interval: float = 0.05) -> bool:
    """Whether ``check`` became true within ``within`` seconds: for scenarios that must stop
    their processes before they assert, or that treat a timeout as an answer."""
    return await _poll(check, within, interval) is not None


async def _poll(check: Check, within: float, interval: float) -> float | None:
    started = time.monotonic()
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            return None
        await asyncio.sleep(interval)
