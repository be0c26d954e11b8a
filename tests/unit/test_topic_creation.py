"""Topics as the cluster wants them: what the service asks for, and what it reads back.

The responses are aiokafka's own CreateTopics v3 structures, encoded and decoded as they come
off the wire; the broker tiers show a real broker's answers (tests/integration).
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka.admin.client
import aiokafka.client
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateTopicsRequest,
    CreateTopicsRequest_v3,
    CreateTopicsResponse_v3,
)
from aiokafka.protocol.metadata import MetadataRequest_v5
from faststream.kafka import KafkaBroker

from genres.config import load_settings
from genres.errors import ClusterRefused, ConfigurationError, Refusal
from genres.kafka.broker import all_topics, client_options, new_topic, read_creation
from genres.kafka.entry import BusEntry, create_broker
from genres.kafka.metadata import NoAutoCreation
from genres.subscriptions import SUBSCRIPTIONS

OK, TIMED_OUT, TOPIC_DENIED, CLUSTER_DENIED, EXISTS, BAD_REPLICATION = 0, 7, 29, 31, 36, 38


def _response(*entries: tuple[str, int, str | None]) -> list[dict[str, Any]]:
    """``topic_errors`` of a CreateTopics v3 response, through its wire encoding."""
    encoded = CreateTopicsResponse_v3(throttle_time_ms=0, topic_errors=list(entries)).encode()
    topic_errors: list[dict[str, Any]] = CreateTopicsResponse_v3.decode(encoded).to_object()[
        "topic_errors"
    ]
    return topic_errors


def _created_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "created topics"]


def test_unset_replication_is_left_to_the_broker_and_sent_as_minus_one() -> None:
    topic = new_topic(load_settings(kafka_topic_partitions=6), "track.uploaded")
    request = CreateTopicsRequest(
        create_topic_requests=[AIOKafkaAdminClient._convert_new_topic_request(topic)],
        timeout=1000,
        validate_only=False,
    )
    # aiokafka's newest CreateTopics (v3) is what Apache Kafka 4.x and Tansu are sent.
    sent = CreateTopicsRequest_v3.decode(request.build(CreateTopicsRequest_v3).encode())
    (name, partitions, replication, assignment, configs) = sent.create_topic_requests[0]
    assert (name, partitions, replication, assignment, configs) == (
        "track.uploaded",
        6,
        -1,
        [],
        [],
    )


def test_a_replication_factor_set_is_sent_as_set() -> None:
    topic = new_topic(load_settings(kafka_replication_factor=3), "t")
    assert (topic.num_partitions, topic.replication_factor) == (3, 3)


def test_only_the_topics_really_created_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="genres.kafka.broker")
    created = read_creation(
        _response(("a", OK, None), ("b", EXISTS, "Topic 'b' already exists."), ("c", OK, None))
    )
    assert created == ["a", "c"]
    (line,) = _created_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.__dict__["topics"] == ["a", "c"]


def test_nothing_is_logged_when_another_instance_created_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="genres.kafka.broker")
    assert read_creation(_response(("a", EXISTS, None), ("b", EXISTS, None))) == []
    assert caplog.records == []


def test_a_refused_creation_is_an_authorization_refusal_naming_create_and_the_topics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="genres.kafka.broker")
    names = all_topics(load_settings())
    with pytest.raises(ClusterRefused) as caught:
        read_creation(_response(*((name, TOPIC_DENIED, "Authorization failed.") for name in names)))
    assert caught.value.refusal is Refusal.AUTHORIZATION
    assert str(caught.value) == (
        f"Kafka denies CREATE on topic {names[0]} (and {len(names) - 1} more: "
        f"{', '.join(names[1:])}) (TOPIC_AUTHORIZATION_FAILED): an ACL for the service's "
        "principal is missing (`genres acls` lists them)"
    )
    assert _created_lines(caplog) == []


def test_a_cluster_refusal_names_the_cluster_and_what_was_asked() -> None:
    with pytest.raises(ClusterRefused) as caught:
        read_creation(_response(("a", CLUSTER_DENIED, None)))
    assert caught.value.refusal is Refusal.AUTHORIZATION
    assert str(caught.value).startswith(
        "Kafka denies CREATE on the cluster (for topic a) (CLUSTER_AUTHORIZATION_FAILED)"
    )


def test_topics_created_before_a_refusal_are_still_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="genres.kafka.broker")
    denied = r"^Kafka denies CREATE on topic b \(TOPIC_AUTHORIZATION_FAILED\)"
    with pytest.raises(ClusterRefused, match=denied):
        read_creation(_response(("a", OK, None), ("b", TOPIC_DENIED, None)))
    (line,) = _created_lines(caplog)
    assert line.__dict__["topics"] == ["a"]


def test_any_other_refusal_names_the_topic_and_kafkas_error() -> None:
    message = (
        "Unable to replicate the partition 3 time(s): The target replication factor of 3 "
        "cannot be reached because only 1 broker(s) are registered."
    )
    with pytest.raises(ConfigurationError) as caught:
        read_creation(_response(("a", BAD_REPLICATION, message), ("b", OK, None)))
    assert not isinstance(caught.value, ClusterRefused)
    assert str(caught.value) == f"cannot create topic a: INVALID_REPLICATION_FACTOR ({message})"


def test_a_transient_error_is_left_to_the_wait_for_the_topic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="genres.kafka.broker")
    assert read_creation(_response(("a", TIMED_OUT, None))) == []
    (line,) = caplog.records
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "topic a not created yet: REQUEST_TIMED_OUT; waiting for it"


# -- no client creates a topic on its own ----------------------------------------------------


def test_no_metadata_request_of_the_service_lets_the_broker_create_a_topic() -> None:
    # Kafka's test bed runs with auto.create.topics.enable=false and so cannot show a topic
    # created by a metadata request; the flag the request carries is what decides it on a
    # broker that allows it (tests/integration/test_no_auto_creation.py shows it on Tansu,
    # which creates topics on request by default).
    client_options(load_settings(kafka_bootstrap_servers="k:9092"))
    for module in (aiokafka.client, aiokafka.admin.client):
        request = module.MetadataRequest(["t"])
        assert isinstance(request, NoAutoCreation)
        assert request.build(MetadataRequest_v5).allow_auto_topic_creation is False
    explicit = aiokafka.client.MetadataRequest(["t"], allow_auto_topic_creation=True)
    assert explicit.build(MetadataRequest_v5).allow_auto_topic_creation is True


@pytest.mark.parametrize("subscription", SUBSCRIPTIONS, ids=lambda s: s.role)
def test_no_faststream_subscriber_asks_faststream_to_create_its_topics(subscription: Any) -> None:
    settings = load_settings(kafka_bootstrap_servers="k:9092", genres_topic_prefix="p.")
    broker = create_broker(settings)
    subscriber = BusEntry.of(subscription, settings).subscriber(broker)

    async def handler(body: bytes) -> None: ...

    subscriber(handler)
    (registered,) = broker.subscribers
    assert [topic.name for topic in registered.topics] == [
        settings.topic(name) for name in subscription.topics
    ]
    assert registered.topics_to_create == []
    # What a plain subscriber would have FastStream create, one partition, one replica:
    plain = KafkaBroker("k:9092").subscriber(*subscription.topics)
    plain(handler)
    assert [topic.name for topic in plain.topics_to_create] == list(subscription.topics)


class _OneBrokerGone:
    """An admin client whose first metadata requests pick a broker that is down."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.asked = 0

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.asked += 1
        if self.asked <= self.failures:
            raise self.error
        return [
            {
                "topic": name,
                "error_code": 0,
                "partitions": [{"partition": 0, "error_code": 0, "leader": 1}],
            }
            for name in names
        ]


async def test_a_metadata_request_to_a_broker_just_gone_is_asked_again() -> None:
    from aiokafka.errors import NodeNotReadyError

    from genres.kafka.broker import wait_for_topics

    admin = _OneBrokerGone(2, NodeNotReadyError("node 0"))
    found = await wait_for_topics(admin, ["a"], timeout_s=5)  # type: ignore[arg-type]
    assert found == {"a": [0]}
    assert admin.asked == 3


async def test_an_error_no_retry_cures_is_raised_at_once() -> None:
    from aiokafka.errors import KafkaError

    from genres.kafka.broker import wait_for_topics

    admin = _OneBrokerGone(1, KafkaError("not retriable"))
    with pytest.raises(KafkaError):
        await wait_for_topics(admin, ["a"], timeout_s=5)  # type: ignore[arg-type]
    assert admin.asked == 1
