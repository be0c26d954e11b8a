"""``genres run``: start-up errors, and SIGTERM in the middle of a run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import collect, producer, send_json, values
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import run_genres, start_genres, stop
from tests.support.service import FAKE_TOKEN

pytestmark = pytest.mark.integration


def test_a_bad_configuration_stops_at_start_with_one_clear_line() -> None:
    result = run_genres("run", "classifier", env={"REPLICATE_ENABLED": "true"})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "REPLICATE_API_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_an_unknown_role_is_refused() -> None:
    result = run_genres("run", "janitor", env={})
    assert result.returncode == 2
    assert "unknown role" in result.stderr


async def test_sigterm_mid_run_loses_nothing_and_a_restart_finishes_the_rest(
    kafka: KafkaTestBed, database_url: str, fake_replicate: FakeReplicate, tmp_path: Path
) -> None:
    fake_replicate.configure(latency_ms=400)
    env = kafka.env() | {
        "DATABASE_URL": database_url,
        "CLASSIFIER_BACKEND": "replicate",
        "REPLICATE_API_TOKEN": FAKE_TOKEN,
        "REPLICATE_BASE_URL": fake_replicate.base_url,
        "CLASSIFIER_CONCURRENCY": "8",
        "KAFKA_SESSION_TIMEOUT_MS": "1000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    }
    count = 60
    log = tmp_path / "classifier.log"
    first = await start_genres("run", "classifier", env=env, log=log)
    async with producer(kafka.bootstrap_servers) as client:
        await kafka.create_topics(topics.TRACK_UPLOADED, topics.GENRES_CLASSIFIED)
        for track_id in range(1, count + 1):
            await send_json(
                client,
                kafka.topic(topics.TRACK_UPLOADED),
                {
                    "track_id": track_id,
                    "file_id": "f",
                    "audio_url": f"https://cdn.test/{track_id}.mp3",
                },
                key=str(track_id),
            )
    # Let part of the work finish, then stop the process in the middle of the run.
    await collect(kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED), count=10)
    assert await stop(first) == 0, log.read_text()
    done_before = len(
        await collect(
            kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED), count=count, timeout=2
        )
    )
    assert done_before < count, "the run should have been stopped in the middle"

    second = await start_genres("run", "classifier", env=env, log=log)
    try:
        records = await collect(
            kafka.bootstrap_servers,
            kafka.topic(topics.GENRES_CLASSIFIED),
            count=count + 64,
            timeout=40,
        )
    finally:
        assert await stop(second) == 0, log.read_text()

    classified = {event["track_id"] for event in values(records)}
    assert classified == set(range(1, count + 1))
    # Each track was paid for once, except records in flight when the first process stopped.
    paid = fake_replicate.stats.creations_per_url
    assert set(paid) == {f"https://cdn.test/{t}.mp3" for t in range(1, count + 1)}
    assert sum(paid.values()) - count <= 8
    await asyncio.sleep(0)
