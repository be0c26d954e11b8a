"""/readyz from the start of the process: what it still waits for, then ready, or refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiokafka.errors import GroupAuthorizationFailedError

from genres.kafka.refusals import Refusals
from genres.observability.health import HealthServer


@pytest.fixture
async def server() -> AsyncIterator[tuple[HealthServer, Refusals]]:
    refusals = Refusals()
    health = HealthServer(
        host="127.0.0.1", port=0, checks={"kafka": refusals.check}, cache_seconds=0
    )
    await health.start()
    try:
        yield health, refusals
    finally:
        await health.stop()


async def get(health: HealthServer, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{health.url}{path}") as answer:
        return answer.status, await answer.json()


async def test_it_answers_while_starting_and_says_what_it_waits_for(
    server: tuple[HealthServer, Refusals],
) -> None:
    health, _ = server
    assert await get(health, "/healthz") == (200, {"status": "ok"})
    seen = []
    for step in ("topics", "database", "roles"):
        health.starting = step
        status, body = await get(health, "/readyz")
        assert status == 503
        seen.append((body["status"], body["starting"], body["failed"]))
        assert body["checks"]["service"] == f"starting: waiting for {step}"
    assert seen == [
        ("starting", "topics", ["service"]),
        ("starting", "database", ["service"]),
        ("starting", "roles", ["service"]),
    ]

    async def answers() -> None:
        return None

    health.add_check("database", answers)
    health.starting = None
    health.started = True
    status, body = await get(health, "/readyz")
    assert status == 200
    assert body["checks"] == {"kafka": "ok", "database": "ok", "service": "ok"}
    assert "starting" not in body


async def test_a_refusal_turns_it_to_503_with_the_line(
    server: tuple[HealthServer, Refusals],
) -> None:
    health, refusals = server
    health.started = True
    assert (await get(health, "/readyz"))[0] == 200
    found = refusals.note(GroupAuthorizationFailedError("genres-projector"), role="projector")
    assert found is not None
    status, body = await get(health, "/readyz")
    assert status == 503
    assert body["status"] == "refused"
    assert body["refused"] == str(found)
    assert body["checks"]["kafka"] == str(found)
    assert body["failed"] == ["kafka"]


async def test_a_refusal_while_starting_says_refused_not_starting(
    server: tuple[HealthServer, Refusals],
) -> None:
    health, refusals = server
    health.starting = "topics"
    refusals.note(GroupAuthorizationFailedError("g"))
    status, body = await get(health, "/readyz")
    assert status == 503
    assert body["status"] == "refused"
    assert sorted(body["failed"]) == ["kafka", "service"]
