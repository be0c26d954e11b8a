"""The service's topics on a real broker: created with the cluster's replication, logged only
when created, and with KAFKA_CREATE_TOPICS=false checked instead of created."""

from __future__ import annotations

import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from genres.config import load_settings
from genres.errors import ClusterRefused, Refusal
from genres.kafka.broker import all_topics, ensure_topics
from genres_contracts import topics
from tests.support.broker import KafkaTestBed


async def _replicas(bootstrap: str, names: list[str]) -> dict[str, set[int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {
        entry["topic"]: {len(p["replicas"]) for p in entry["partitions"]} for entry in described
    }


async def _existing(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def _created(caplog: pytest.LogCaptureFixture) -> list[list[str]]:
    return [r.__dict__["topics"] for r in caplog.records if r.getMessage() == "created topics"]


async def test_topics_take_the_brokers_replication_and_are_logged_once_created(
    kafka: KafkaTestBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="genres.kafka.broker")
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        genres_topic_prefix=kafka.prefix,
        kafka_topic_partitions=2,
    )
    assert settings.kafka_replication_factor is None
    names = all_topics(settings)
    already = await kafka.create_topics(topics.TRACK_UPLOADED)
    caplog.clear()

    created = await ensure_topics(settings)

    assert sorted(created) == sorted(set(names) - set(already))
    assert _created(caplog) == [created]
    # The test brokers' default.replication.factor is 1 (a single node).
    assert await _replicas(kafka.bootstrap_servers, names) == {name: {1} for name in names}
    caplog.clear()
    assert await ensure_topics(settings) == []
    assert _created(caplog) == []


async def test_with_creation_off_every_missing_topic_is_named_in_one_line(
    kafka: KafkaTestBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="genres.kafka.broker")
    settings = load_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        genres_topic_prefix=kafka.prefix,
        kafka_create_topics=False,
    )
    present = await kafka.create_topics(topics.TRACK_UPLOADED, topics.GENRES_CLASSIFIED)
    missing = [name for name in all_topics(settings) if name not in present]
    caplog.clear()

    with pytest.raises(ClusterRefused) as caught:
        await ensure_topics(settings)

    assert caught.value.refusal is Refusal.MISSING_TOPIC
    assert str(caught.value).startswith(
        f"Kafka topics missing: {', '.join(sorted(missing))} (UNKNOWN_TOPIC_OR_PARTITION)"
    )
    # Nothing was created, not even by asking about the missing topics (Tansu would).
    assert set(missing) & await _existing(kafka.bootstrap_servers) == set()
    with pytest.raises(ClusterRefused):
        await ensure_topics(settings)
    assert _created(caplog) == []
    await kafka.create_topics(*(name.removeprefix(kafka.prefix) for name in missing))
    caplog.clear()
    assert await ensure_topics(settings) == []
    assert _created(caplog) == []
