"""The bus entry: each consuming role's subscription resolved for a deployment, one way."""

from __future__ import annotations

from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from genres.config import Settings
from genres.kafka.entry import BusEntry
from genres.subscriptions import CLASSIFIER, PROJECTOR, RESPONDER, SUBSCRIPTIONS, Subscription
from genres_contracts import ClassificationRequested, TrackUploaded, topics


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "localhost:9092",
        "genres_topic_prefix": "blue.",
        "kafka_fetch_max_wait_ms": 40,
        "kafka_session_timeout_ms": 12_000,
        "kafka_heartbeat_interval_ms": 4_000,
    }
    return Settings(**(values | overrides))


def test_an_entry_prefixes_topics_and_group_and_carries_the_shared_options() -> None:
    entry = BusEntry.of(CLASSIFIER, _settings())

    assert entry.topics == ("blue.track.uploaded", "blue.track.classification_requested")
    assert entry.group == "blue.genres-classifier"
    assert entry.options == {
        "fetch_max_wait_ms": 40,
        "session_timeout_ms": 12_000,
        "heartbeat_interval_ms": 4_000,
    }
    assert entry.inputs() == {
        "blue.track.uploaded": (topics.TRACK_UPLOADED, TrackUploaded),
        "blue.track.classification_requested": (
            topics.CLASSIFICATION_REQUESTED,
            ClassificationRequested,
        ),
    }


def test_a_role_may_shorten_its_fetch_wait() -> None:
    entry = BusEntry.of(RESPONDER, _settings(), fetch_max_wait_ms=5)

    assert entry.options["fetch_max_wait_ms"] == 5
    assert entry.options["session_timeout_ms"] == 12_000


@pytest.mark.parametrize("subscription", [PROJECTOR, RESPONDER], ids=lambda s: s.role)
def test_a_faststream_role_subscribes_where_its_entry_says(subscription: Subscription) -> None:
    entry = BusEntry.of(subscription, _settings())
    broker = KafkaBroker("localhost:9092")  # never connects

    subscriber = entry.subscriber(broker, title=subscription.role)

    async def handler(body: bytes) -> None: ...

    subscriber(handler)
    registered = cast(list[Any], broker.subscribers)
    assert [s.group_id for s in registered] == [entry.group]
    assert tuple(registered[0].specification.topics) == entry.topics


def test_every_subscription_resolves_without_a_prefix_to_its_canonical_names() -> None:
    settings = _settings(genres_topic_prefix="")
    for subscription in SUBSCRIPTIONS:
        entry = BusEntry.of(subscription, settings)
        assert entry.topics == subscription.topics
        assert entry.group == subscription.group
