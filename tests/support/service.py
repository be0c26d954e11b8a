"""Settings pointing the service at this test's broker prefix, database and fake Replicate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from genres.config import Settings, load_settings
from genres.kafka.broker import ensure_topics
from genres.kafka.producer import Publisher
from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer, send_json
from tests.support.fake_replicate import FakeReplicate

FAKE_TOKEN = "r8_fake_token"


def service_settings(
    kafka: KafkaTestBed,
    database_url: str | None,
    fake: FakeReplicate | None = None,
    **overrides: Any,
) -> Settings:
    """The settings of the service under test, the one builder of them: this test's topic
    prefix and database (none: a bus-only test), fast group joins and short waits; the
    Replicate backend when a fake is given."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers,
        "genres_topic_prefix": kafka.prefix,
        "database_url": database_url,
        "kafka_session_timeout_ms": 1000,
        "kafka_heartbeat_interval_ms": 300,
        "kafka_fetch_max_wait_ms": 10,
        "kafka_enable_idempotence": kafka.idempotence,
        "log_format": "console",
        # Off unless a test asks: tests run several services side by side.
        "health_port": 0,
    }
    if fake is not None:
        values |= {
            "classifier_backend": "replicate",
            "replicate_api_token": FAKE_TOKEN,
            "replicate_base_url": fake.base_url,
            "replicate_timeout_seconds": 20,
        }
    return load_settings(**(values | overrides))


@pytest.fixture
def make_settings(kafka: KafkaTestBed, database_url: str) -> Any:
    def make(fake: FakeReplicate | None = None, **overrides: Any) -> Settings:
        return service_settings(kafka, database_url, fake, **overrides)

    return make


@pytest.fixture
def replicate_settings(
    make_settings: Callable[..., Settings], fake_replicate: FakeReplicate
) -> Settings:
    """:func:`service_settings` with the Replicate backend on the test's fake."""
    settings: Settings = make_settings(fake_replicate)
    return settings


@pytest.fixture
def settings(kafka: KafkaTestBed, database_url: str) -> Settings:
    """In-process roles on this test's topic prefix and database (:func:`service_settings`).

    Test modules needing other settings define their own ``settings`` fixture."""
    return service_settings(kafka, database_url)


@pytest_asyncio.fixture
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """A started :class:`Publisher` for ``settings`` (the service's topics exist)."""
    await ensure_topics(settings)
    publisher = Publisher.create(settings)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


def process_env(
    bootstrap: str,
    prefix: str,
    database_url: str,
    fake: FakeReplicate,
    *,
    concurrency: int,
    token: str = FAKE_TOKEN,
    timeout_s: float = 20.0,
    **extra: str,
) -> dict[str, str]:
    """Environment of a ``genres run <role>`` process, the one builder of it: fast group
    joins, ``fake`` as Replicate, no pacing; ``extra`` variables on top."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GENRES_TOPIC_PREFIX": prefix,
        "DATABASE_URL": database_url,
        "CLASSIFIER_BACKEND": "replicate",
        "REPLICATE_API_TOKEN": token,
        "REPLICATE_BASE_URL": fake.base_url,
        "REPLICATE_TIMEOUT_SECONDS": f"{timeout_s:g}",
        "REPLICATE_MAX_PREDICTIONS_PER_MINUTE": "100000",
        "CLASSIFIER_CONCURRENCY": str(concurrency),
        "KAFKA_SESSION_TIMEOUT_MS": "1000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "KAFKA_FETCH_MAX_WAIT_MS": "10",
        **extra,
    }


async def send_upload(
    client: AIOKafkaProducer,
    kafka: KafkaTestBed,
    track_id: int,
    file_id: str = "f",
    *,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """The platform's ``track.uploaded`` for a track whose audio is
    ``https://cdn.test/<id>.mp3`` (as :func:`~tests.support.database.insert_track` has it)."""
    upload = {
        "track_id": track_id,
        "file_id": file_id,
        "audio_url": f"https://cdn.test/{track_id}.mp3",
    }
    topic = kafka.topic(topics.TRACK_UPLOADED)
    await send_json(client, topic, upload, key=str(track_id), headers=headers)


async def upload_numbered_tracks(kafka: KafkaTestBed, count: int) -> None:
    """Create the upload and classified topics, then upload tracks ``1..count`` (file ``f``)."""
    async with producer(kafka.bootstrap_servers) as client:
        await kafka.create_topics(topics.TRACK_UPLOADED, topics.GENRES_CLASSIFIED)
        for track_id in range(1, count + 1):
            await send_upload(client, kafka, track_id)
