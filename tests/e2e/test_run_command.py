"""``genres run``: start-up errors, and SIGTERM in the middle of a run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import read_topic, values
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import run_genres, start_genres, stop
from tests.support.service import process_env, upload_numbered_tracks
from tests.support.waiting import eventually


def test_a_bad_configuration_stops_at_start_with_one_clear_line() -> None:
    # The variables it needs are set: the mistake is the missing token.
    env = {
        "REPLICATE_ENABLED": "true",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "DATABASE_URL": "postgresql://127.0.0.1:9/genres",
    }
    result = run_genres("run", "classifier", env=env)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "REPLICATE_API_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_an_unknown_role_is_refused() -> None:
    result = run_genres("run", "janitor", env={})
    assert result.returncode == 2
    assert result.stderr.startswith("error: genres run: argument role: invalid choice: 'janitor'")
    assert result.stderr.count("\n") == 1


async def test_sigterm_mid_run_loses_nothing_and_a_restart_finishes_the_rest(
    kafka: KafkaTestBed, database_url: str, fake_replicate: FakeReplicate, tmp_path: Path
) -> None:
    fake_replicate.configure(latency_ms=400)
    env = process_env(
        kafka.bootstrap_servers, kafka.prefix, database_url, fake_replicate, concurrency=8
    )
    count = 60
    log = tmp_path / "classifier.log"
    first = await start_genres("run", "classifier", env=env, log=log)
    await upload_numbered_tracks(kafka, count)
    # Let part of the work finish, then stop the process in the middle of the run.
    await read_topic(kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED), count=10)
    assert await stop(first) == 0, log.read_text()
    # Stopped: what it published is on the topic, up to its end now.
    done_before = len(
        await read_topic(kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED))
    )
    assert done_before < count, "the run should have been stopped in the middle"

    second = await start_genres("run", "classifier", env=env, log=log)
    outcomes = kafka.topic(topics.GENRES_CLASSIFIED)

    async def every_track_classified() -> bool:
        records = await read_topic(kafka.bootstrap_servers, outcomes)
        return {event["track_id"] for event in values(records)} >= set(range(1, count + 1))

    try:
        await eventually(every_track_classified, within=40, what="every track classified")
    finally:
        assert await stop(second) == 0, log.read_text()
    records = await read_topic(kafka.bootstrap_servers, outcomes)

    classified = {event["track_id"] for event in values(records)}
    assert classified == set(range(1, count + 1))
    # Each track was paid for once, except records in flight when the first process stopped.
    paid = fake_replicate.stats.creations_per_url
    assert set(paid) == {f"https://cdn.test/{t}.mp3" for t in range(1, count + 1)}
    assert sum(paid.values()) - count <= 8
    await asyncio.sleep(0)
