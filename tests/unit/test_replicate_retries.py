"""One HTTP step of a prediction retried inside its deadline, with stamina's pacing.

The unit tier runs with stamina's test switch on (tests/conftest.py): retries happen, waits do
not, the first retry's included (stamina makes it, as every other). A backoff of an hour shows
it: a wait would time the test out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import stamina

from genres.classify.replicate.retries import Backoff, Deadline, Retries
from genres.errors import PermanentClassificationError, RateLimited, RetryableClassificationError

HOUR = Backoff(initial=3600.0, maximum=3600.0, jitter=0.0)


def failing(
    times: int, calls: list[int], error: Exception | None = None
) -> Callable[[], Awaitable[str]]:
    """A call failing its first ``times`` attempts with ``error``, each noted in ``calls``."""

    async def call() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise error or RetryableClassificationError("503 from Replicate")
        return "done"

    return call


async def test_a_retryable_failure_is_retried_without_waiting_under_the_test_switch() -> None:
    calls: list[int] = []
    retried: list[str] = []

    retries = Retries(HOUR, max_attempts=5, on_retry=retried.append)
    assert await retries.run("create", Deadline(7200.0), failing(2, calls)) == ("done", 3)
    assert calls == [1, 2, 3]
    assert retried == ["create", "create"]


async def test_a_call_that_succeeds_at_once_is_one_attempt() -> None:
    calls: list[int] = []
    retries = Retries(HOUR, max_attempts=5)
    assert await retries.run("poll", Deadline(7200.0), failing(0, calls)) == ("done", 1)


async def test_a_give_up_says_how_many_attempts_stamina_made() -> None:
    calls: list[int] = []
    with pytest.raises(RetryableClassificationError) as caught:
        await Retries(HOUR, max_attempts=4).run("create", Deadline(7200.0), failing(99, calls))
    assert caught.value.attempts == 4
    assert len(calls) == 4


async def test_a_poll_given_up_is_still_one_attempt_at_classifying() -> None:
    calls: list[int] = []
    with pytest.raises(RetryableClassificationError) as caught:
        await Retries(HOUR, max_attempts=4).run("poll", Deadline(7200.0), failing(99, calls))
    assert len(calls) == 4
    assert caught.value.attempts == 1


async def test_the_server_s_own_wait_is_not_waited_under_the_test_switch() -> None:
    calls: list[int] = []
    throttled = RateLimited("429", retry_after=3000.0)
    retries = Retries(HOUR, max_attempts=5)
    assert await retries.run("create", Deadline(7200.0), failing(1, calls, throttled)) == (
        "done",
        2,
    )


async def test_a_permanent_failure_is_not_retried() -> None:
    calls: list[int] = []
    with pytest.raises(PermanentClassificationError) as caught:
        await Retries(HOUR, max_attempts=5).run(
            "create", Deadline(7200.0), failing(9, calls, PermanentClassificationError("422"))
        )
    assert calls == [1]
    assert caught.value.attempts == 1


async def test_without_the_test_switch_stamina_waits_before_the_second_attempt() -> None:
    """The wait before the second attempt is stamina's (no hand-made imitation): with the
    switch off, a short backoff is waited."""
    calls: list[int] = []
    short = Backoff(initial=0.05, maximum=0.05, jitter=0.0)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, *args: object) -> None:
        slept.append(delay)
        await real_sleep(0)

    with stamina.set_testing(False), pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", recorded)
        result = await Retries(short, max_attempts=3).run(
            "create", Deadline(60.0), failing(2, calls)
        )
    assert result == ("done", 3)
    assert slept == [0.05, 0.05]
