"""Which failures the roles wait out (the one retry policy), and that they do wait them out."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from genres.retry import is_transient, retrying


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def dbapi_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("UPDATE tracks ...", {}, _PgError(sqlstate))


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        ConnectionResetError(),
        dbapi_error("40P01"),  # deadlock
        dbapi_error("40001"),  # serialization failure
        dbapi_error("57P01"),  # admin shutdown
        dbapi_error("08006"),  # connection failure
    ],
)
def test_transient_failures_are_retried(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT ...", {}, _PgError("23505")),
        dbapi_error("42P01"),  # undefined table: a deployment problem, not a blip
        ValueError("bug"),
    ],
)
def test_other_failures_are_not(error: BaseException) -> None:
    assert not is_transient(error)


async def test_retrying_keeps_going_until_it_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OperationalError("SELECT 1", {}, Exception("gone"))
        return "done"

    assert await retrying(flaky, what="test") == "done"
    assert calls == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


async def test_retrying_gives_up_at_once_on_a_bug() -> None:
    async def broken() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await retrying(broken, what="test")
