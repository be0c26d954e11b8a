"""A stalled partition is loud: the ERROR line, the gauge and /readyz turn, then recover.

The role under test reaches PostgreSQL through a TCP proxy that refuses connections for longer
than a short ``KAFKA_STALL_SECONDS`` while a record waits on its partition (real broker, real
database): the projector waits the outage out inside its batch handler, the classifier retries
its handler in place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import Role, running
from genres.embedded import free_port
from genres.observability.stalls import NO_ERROR
from genres_contracts import GenresClassified, topics
from tests.faults.tcp_proxy import TcpProxy
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.service import service_settings
from tests.support.waiting import eventually

STALL_SECONDS = 2.0


def classified(track_id: int) -> bytes:
    return (
        GenresClassified.model_validate(
            {
                "source_event_id": f"src-{track_id}",
                "track_id": track_id,
                "file_id": "f",
                "predictions": [{"name": "techno", "confidence": 0.9}],
                "model": {"name": "musicnn/msd", "version": "1"},
                "classified_at": datetime(2026, 11, 25, 19, 0, 2, tzinfo=UTC),
            }
        )
        .model_dump_json()
        .encode()
    )


def uploaded(track_id: int) -> bytes:
    return json.dumps(
        {"track_id": track_id, "file_id": "f", "audio_url": f"https://cdn.test/{track_id}.mp3"}
    ).encode()


async def projected(engine: AsyncEngine, track_id: int) -> bool:
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT extra ? 'genre_predictions' FROM tracks WHERE id = :id"),
            {"id": track_id},
        )
    return stored is True


async def recorded(engine: AsyncEngine, track_id: int) -> bool:
    async with engine.connect() as connection:
        status = await connection.scalar(
            text("SELECT status FROM genre_classifications WHERE track_id = :id"),
            {"id": track_id},
        )
    return bool(status == "succeeded")


@dataclass(frozen=True)
class Scenario:
    role: Role
    topic: str
    record: Callable[[int], bytes]
    done: Callable[[AsyncEngine, int], Awaitable[bool]]


SCENARIOS = {
    "projector": Scenario(Role.PROJECTOR, topics.GENRES_CLASSIFIED, classified, projected),
    "classifier": Scenario(Role.CLASSIFIER, topics.TRACK_UPLOADED, uploaded, recorded),
}


async def stalled_gauge(session: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], float]:
    """``(role, partition) -> value`` of genres_partition_stalled at /metrics."""
    async with session.get(f"{base}/metrics") as response:
        page = await response.text()
    return {
        (s.labels["role"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "genres_partition_stalled"
    }


async def readyz(session: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{base}/readyz") as response:
        return response.status, await response.json()


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_a_role_cut_off_its_database_stalls_loudly_and_recovers(
    name: str,
    kafka: KafkaTestBed,
    database_url: str,
    engine: AsyncEngine,
    fake_replicate: FakeReplicate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenario = SCENARIOS[name]
    role = scenario.role.value
    caplog.set_level(logging.INFO, logger="genres.observability.stalls")
    for track_id in (1, 2):
        await insert_track(engine, track_id, audio_url="https://cdn.test/a.mp3")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    topic = kafka.topic(scenario.topic)
    async with TcpProxy.for_database(database_url) as proxy:
        settings = service_settings(
            kafka,
            proxy.url_through(database_url),
            fake_replicate,
            health_port=port,
            health_host="127.0.0.1",
            kafka_stall_seconds=STALL_SECONDS,
        )
        async with (
            running(settings, frozenset({scenario.role})),
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            producer(kafka.bootstrap_servers) as client,
        ):
            await client.send_and_wait(topic, scenario.record(1), key=b"1")
            await eventually(lambda: scenario.done(engine, 1), what="track 1 handled")

            async def ready() -> bool:
                return (await readyz(session, base))[0] == 200

            await eventually(ready, what="ready before the outage")

            await proxy.refuse()
            sent = await client.send_and_wait(topic, scenario.record(2), key=b"2")
            partition, offset = sent.partition, sent.offset
            named = f"{role} {topic}[{partition}] at offset {offset}"

            def stall_line() -> logging.LogRecord | None:
                for record in caplog.records:
                    if record.levelno == logging.ERROR and record.getMessage().startswith(
                        f"partition stalled: {named},"
                    ):
                        return record
                return None

            await eventually(lambda: stall_line() is not None, what="the ERROR line")
            line = stall_line()
            assert line is not None
            fields = {k: vars(line)[k] for k in ("role", "topic", "partition", "offset")}
            assert fields == {
                "role": role,
                "topic": topic,
                "partition": partition,
                "offset": offset,
            }
            reason = vars(line)["reason"]
            assert reason != NO_ERROR
            assert reason in line.getMessage()
            assert (await stalled_gauge(session, base))[(role, str(partition))] == 1.0
            status, body = await readyz(session, base)
            assert status == 503, body
            assert "partitions" in body["failed"]
            assert named in body["checks"]["partitions"]
            assert not await scenario.done(engine, 2)

            await proxy.restore()
            await eventually(lambda: scenario.done(engine, 2), what="track 2 handled")

            async def recovered() -> bool:
                return (await stalled_gauge(session, base)).get((role, str(partition))) == 0.0

            await eventually(recovered, what="the gauge back to 0")
            await eventually(ready, what="ready again")
            moving = [r for r in caplog.records if "moving again" in r.getMessage()]
            assert [(r.levelno, vars(r)["partition"]) for r in moving] == [
                (logging.INFO, partition)
            ]
