"""One HTTP step of a prediction retried inside its deadline, with stamina's pacing.

The unit tier runs with stamina's test switch on (tests/conftest.py): retries happen, waits do
not, the hand-made wait before the second attempt included. A backoff of an hour shows it.
"""

from __future__ import annotations

import pytest

from genres.classify.replicate.retries import Backoff, Deadline, Retries
from genres.errors import PermanentClassificationError, RetryableClassificationError

HOUR = Backoff(initial=3600.0, maximum=3600.0, jitter=0.0)


async def test_a_retryable_failure_is_retried_without_waiting_under_the_test_switch() -> None:
    attempts: list[int] = []
    retried: list[str] = []

    async def flaky(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise RetryableClassificationError("503 from Replicate")
        return "done"

    retries = Retries(HOUR, max_attempts=5, on_retry=retried.append)
    assert await retries.run("create", Deadline(7200.0), flaky) == "done"
    assert attempts == [1, 2, 3]
    assert retried == ["create", "create"]


async def test_a_permanent_failure_is_not_retried() -> None:
    attempts: list[int] = []

    async def broken(attempt: int) -> str:
        attempts.append(attempt)
        raise PermanentClassificationError("422: bad input")

    with pytest.raises(PermanentClassificationError):
        await Retries(HOUR, max_attempts=5).run("create", Deadline(7200.0), broken)
    assert attempts == [1]
