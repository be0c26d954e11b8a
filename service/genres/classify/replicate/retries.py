"""Retrying one HTTP step of a prediction (stamina, the service's one retry policy) inside the
classification's deadline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina

from genres.errors import (
    ClassificationError,
    ClassificationTimeout,
    RateLimited,
    RetryableClassificationError,
)

T = TypeVar("T")

CREATE = "create"
"""The step whose attempts are the classification's: each may create a paid prediction (a
poll or an output fetch retried is still one attempt at classifying)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry pacing; tests shrink it."""

    initial: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.5
    poll_initial: float = 0.25
    poll_maximum: float = 2.0


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def check(self, when: str) -> None:
        if self.remaining <= 0:
            raise ClassificationTimeout(f"deadline of {self.seconds:g}s passed {when}")


@dataclass(frozen=True, slots=True)
class Retries:
    backoff: Backoff
    max_attempts: int
    on_retry: Callable[[str], None] | None = None
    """Told the step (create, poll, output) of each HTTP call that is retried (metrics)."""
    on_throttled: Callable[[str], None] | None = None
    """Told the step of each HTTP call the server answered 429 (metrics)."""

    async def run(
        self, step: str, deadline: Deadline, call: Callable[[], Awaitable[T]]
    ) -> tuple[T, int]:
        """``call()`` until it succeeds, fails for good, or attempts or time run out: its value
        and the attempts stamina counted. On the :data:`CREATE` step the error it gives up
        with carries that count (``ClassificationError.attempts``), as the classification's
        failure reports it.
        """
        # Most calls succeed at once, and a retry context costs about as much CPU as the HTTP
        # call it guards (profiled: ~30 us), so the first attempt runs bare. Its failure is
        # replayed as stamina's first attempt: stamina decides, waits (or not, under its test
        # switch) and counts as for any other.
        if self.on_throttled is not None:
            call = _telling(step, call, self.on_throttled)
        try:
            return await call(), 1
        except Exception as exc:
            first = exc
        made = 0
        try:
            async for attempt in stamina.retry_context(
                on=lambda exc: backoff_for(exc, deadline),
                attempts=self.max_attempts,
                timeout=max(deadline.remaining, 0.001),
                wait_initial=self.backoff.initial,
                wait_max=self.backoff.maximum,
                wait_jitter=self.backoff.jitter,
            ):
                made = attempt.num
                with attempt:
                    if made == 1:
                        raise first
                    if self.on_retry is not None:
                        self.on_retry(step)
                    return await call(), made
        except ClassificationError as exc:
            if step == CREATE:
                exc.attempts = made
            raise
        raise AssertionError("unreachable: stamina raises when it stops retrying")


def _telling(
    step: str, call: Callable[[], Awaitable[T]], told: Callable[[str], None]
) -> Callable[[], Awaitable[T]]:
    """``call`` that tells ``told`` of each 429 before raising it on."""

    async def telling() -> T:
        try:
            return await call()
        except RateLimited:
            told(step)
            raise

    return telling


def backoff_for(exc: Exception, deadline: Deadline) -> bool | float:
    """stamina's ``on``: False to give up, the server's own wait when it gave one that
    fits the deadline, else True (exponential backoff)."""
    if not isinstance(exc, RetryableClassificationError) or deadline.remaining <= 0:
        return False
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return exc.retry_after if exc.retry_after < deadline.remaining else False
    return True
