"""A classifier killed while its predictions run resumes them after a restart: none is paid
for twice."""

from __future__ import annotations

import signal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import read_topic, values
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import start_genres, stop
from tests.support.service import process_env, upload_numbered_tracks
from tests.support.waiting import eventually

COUNT = 8


async def test_predictions_running_at_a_kill_are_resumed_not_paid_again(
    kafka: KafkaTestBed,
    database_url: str,
    engine: AsyncEngine,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> None:
    fake_replicate.configure(latency_ms=3000)
    env = process_env(
        kafka.bootstrap_servers,
        kafka.prefix,
        database_url,
        fake_replicate,
        concurrency=COUNT,
        HEALTH_PORT="0",
        # The id comes back after 1 s rather than with the result.
        REPLICATE_PREFER_WAIT_SECONDS="1",
    )
    log = tmp_path / "classifier.log"
    first = await start_genres("run", "classifier", env=env, log=log)
    await upload_numbered_tracks(kafka, COUNT)

    async def recorded() -> bool:
        async with engine.connect() as conn:
            query = text("SELECT count(job_id) FROM genre_classifications")
            return (await conn.execute(query)).scalar_one() == COUNT

    await eventually(recorded, within=30, what="every prediction's id on record")
    assert fake_replicate.stats.running == COUNT
    await stop(first, signal.SIGKILL)  # no cleanup, no cancels

    second = await start_genres("run", "classifier", env=env, log=log)
    try:
        records = await read_topic(
            kafka.bootstrap_servers,
            kafka.topic(topics.GENRES_CLASSIFIED),
            count=COUNT,
            timeout=40,
        )
    finally:
        assert await stop(second) == 0, log.read_text()

    assert {event["track_id"] for event in values(records)} == set(range(1, COUNT + 1))
    assert fake_replicate.stats.creations_per_url == {
        f"https://cdn.test/{t}.mp3": 1 for t in range(1, COUNT + 1)
    }
    assert fake_replicate.stats.cancels == 0
