"""The other commands, run as processes: migrate, backfill, recommend, classify errors."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from genres.bootstrap import ALL_ROLES, running
from genres.config import Settings
from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import read_topic, values
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import run_genres


async def test_migrate_creates_the_schema_and_is_safe_to_repeat(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url}
    first = await asyncio.to_thread(run_genres, "migrate", env=env)
    second = await asyncio.to_thread(run_genres, "migrate", env=env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    # For people: one line, none of Alembic's log lines.
    assert re.fullmatch(r"database at revision \w+\n", second.stdout)
    assert first.stderr == second.stderr == ""
    engine = create_async_engine(empty_database_url)
    try:
        async with engine.connect() as conn:
            tables = set(
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).scalars()
            )
    finally:
        await engine.dispose()
    assert {"tracks", "tags", "track_tags", "genre_classifications"} <= tables


async def seed_tracks(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tracks (id, file_id, audio_url, extra) VALUES "
                "(1, 'a', 'https://cdn.test/1.mp3', '{}'),"
                "(2, 'b', 'https://cdn.test/2.mp3', "
                ' \'{"genre_predictions": [], "genre_predictions_file_id": "b"}\'),'
                "(3, 'c2', 'https://cdn.test/3.mp3', "
                ' \'{"genre_predictions": [], "genre_predictions_file_id": "c1"}\'),'
                "(4, 'd', NULL, '{}')"
            )
        )


@pytest.fixture
async def seeded_env(kafka: KafkaTestBed, database_url: str, engine: AsyncEngine) -> dict[str, str]:
    """The environment of a command run against the seeded tracks."""
    await seed_tracks(engine)
    return kafka.env() | {"DATABASE_URL": database_url}


async def test_backfill_dry_run_lists_tracks_lacking_current_predictions(
    seeded_env: dict[str, str],
) -> None:
    # It only reads the database: the broker's variable is not needed.
    env = {"DATABASE_URL": seeded_env["DATABASE_URL"]}
    result = await asyncio.to_thread(run_genres, "backfill", "--dry-run", env=env)

    assert result.returncode == 0, result.stderr
    assert "2 tracks would be requested" in result.stdout
    lines = result.stdout.splitlines()
    assert any("https://cdn.test/1.mp3" in line for line in lines)
    assert any("https://cdn.test/3.mp3" in line for line in lines)
    assert not any("https://cdn.test/2.mp3" in line for line in lines)


async def test_backfill_other_model_also_lists_predictions_of_an_unrecorded_model(
    seeded_env: dict[str, str],
) -> None:
    local = seeded_env | {"CLASSIFIER_BACKEND": "local"}
    result = await asyncio.to_thread(
        run_genres, "backfill", "--dry-run", "--other-model", env=local
    )

    assert result.returncode == 0, result.stderr
    assert "3 tracks would be requested" in result.stdout  # track 2's model is not recorded
    assert any("https://cdn.test/2.mp3" in line for line in result.stdout.splitlines())

    none = seeded_env | {"CLASSIFIER_BACKEND": "none"}
    refused = await asyncio.to_thread(
        run_genres, "backfill", "--dry-run", "--other-model", env=none
    )
    assert refused.returncode != 0
    assert "--other-model" in refused.stderr + refused.stdout


async def while_serving(
    settings: Settings, env: dict[str, str], *commands: list[str]
) -> list[subprocess.CompletedProcess[str]]:
    """Run each ``genres`` command in turn, in a thread, while every role serves ``settings``."""
    async with running(settings, ALL_ROLES):
        return [await asyncio.to_thread(run_genres, *command, env=env) for command in commands]


async def test_backfill_waits_for_outcomes_and_is_safe_to_run_twice(
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
    seeded_env: dict[str, str],
) -> None:
    first, second = await while_serving(
        replicate_settings,
        seeded_env,
        ["backfill", "--wait", "--timeout", "60", "--concurrency", "2"],
        ["backfill", "--wait"],
    )

    assert first.returncode == 0, first.stderr
    assert "requested 2 of 2" in first.stdout
    assert "classified 2, failed 0" in first.stdout
    # No log lines for people to read, and no unclosed client.
    assert first.stderr == second.stderr == ""
    assert second.returncode == 0, second.stderr
    assert "requested 0 of 0" in second.stdout
    assert sum(fake_replicate.stats.creations_per_url.values()) == 2


async def test_backfill_wait_lists_each_failed_track_with_its_reason(
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
    seeded_env: dict[str, str],
) -> None:
    fake_replicate.configure(fail_rate=1.0)
    [result] = await while_serving(
        replicate_settings, seeded_env, ["backfill", "--wait", "--timeout", "60"]
    )

    assert result.returncode == 1, result.stderr
    assert "classified 0, failed 2" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed track")]
    assert [line.split(":", 1)[0] for line in failed] == ["failed track 1", "failed track 3"]
    assert all(": prediction_failed: " in line for line in failed), failed
    assert result.stderr == ""


async def test_recommend_asks_the_running_service_over_the_bus(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    seeded_env: dict[str, str],
) -> None:
    pending, waited, missing = await while_serving(
        replicate_settings,
        seeded_env,
        ["recommend", "1"],
        ["recommend", "1", "--limit", "3", "--wait-ms", "20000", "--json"],
        ["recommend", "999"],
    )

    # Track 1 has no predictions yet: the first answer says so, and what to do, in words.
    assert pending.returncode == 0, pending.stderr
    assert "track 1: classification pending" in pending.stdout
    assert "genres recommend 1 --wait-ms" in pending.stdout
    assert "│" not in pending.stdout  # not an empty table
    assert waited.returncode == 0, waited.stderr
    assert waited.stderr == ""  # no log lines (its reply topic), no unclosed client
    reply = json.loads(waited.stdout)
    assert reply["track_id"] == 1
    assert reply["pending"] is False
    assert len(reply["tags"]) == 3
    assert missing.returncode == 1
    assert "not_found" in missing.stderr
    requested = await read_topic(
        kafka.bootstrap_servers, kafka.topic(topics.CLASSIFICATION_REQUESTED), count=1, timeout=5
    )
    assert [v["reason"] for v in values(requested)] == ["on_demand"]


def test_recommend_without_an_answer_says_why_in_one_line(kafka: KafkaTestBed) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = run_genres(
        "recommend", "1", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port}"}
    )
    assert unreachable.returncode == 3
    assert unreachable.stderr == (
        f"error: cannot reach the Kafka broker at 127.0.0.1:{closed_port}\n"
    )

    nobody = run_genres("recommend", "1", "--timeout", "0.5", "--json", env=kafka.env())
    assert nobody.returncode == 3
    assert nobody.stdout == ""
    assert re.fullmatch(r"error: no reply to request \w+ on \S+ within 0.5 s\n", nobody.stderr)


def test_classify_refuses_a_missing_file_with_a_clear_message() -> None:
    result = run_genres("classify", "/nonexistent/song.mp3", env={})
    assert result.returncode == 1
    assert "no such file" in result.stderr
