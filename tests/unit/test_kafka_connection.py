"""The broker list: parsed once from KAFKA_BOOTSTRAP_SERVERS, handed whole to every client."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from genres.cli.failures import explain
from genres.config import load_settings
from genres.errors import ConfigurationError
from genres.kafka.broker import client_options
from genres.kafka.client import genres_client
from genres.kafka.entry import BusEntry, create_broker
from genres.kafka.producer import Publisher
from genres.subscriptions import CLASSIFIER

SERVERS = " h1.test:9092,h2.test:9093 , [::1]:9094"
HOSTS = sorted([("h1.test", 9092), ("h2.test", 9093), ("::1", 9094)])


def _hosts(client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient) -> list[Any]:
    """The brokers the client would bootstrap from, as aiokafka parsed them (it shuffles
    them, so that clients spread over the list)."""
    inner = client.client if isinstance(client, AIOKafkaProducer) else client._client
    return sorted((host, port) for host, port, _ in inner.hosts)


def test_the_list_is_parsed_once_spaces_tolerated() -> None:
    settings = load_settings(kafka_bootstrap_servers=SERVERS)
    assert settings.kafka_bootstrap_servers == ["h1.test:9092", "h2.test:9093", "[::1]:9094"]
    assert load_settings(kafka_bootstrap_servers="one:1").kafka_bootstrap_servers == ["one:1"]
    assert load_settings(kafka_bootstrap_servers=" ").kafka_bootstrap_servers is None


@pytest.mark.parametrize(
    ("servers", "complaint"),
    [
        ("h1:9092,,h2:9092", "an empty item in the list"),
        ("h1:9092, ", "an empty item in the list"),
        ("h1:9092,h2", "'h2' has no port"),
        ("h1:", "'h1:' has no port"),
        (":9092", "':9092' has no port"),
        ("h1:kafka", "'h1:kafka': the port is not a number"),
        ("h1:70000", "'h1:70000': the port is not a number"),
    ],
)
def test_an_empty_item_or_a_missing_port_is_one_line_naming_the_variable(
    servers: str, complaint: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(kafka_bootstrap_servers=servers)
    message = str(caught.value)
    assert message.startswith("invalid configuration: KAFKA_BOOTSTRAP_SERVERS: ")
    assert complaint in message
    assert "\n" not in message


async def test_every_aiokafka_client_gets_every_broker_of_the_list() -> None:
    settings = load_settings(kafka_bootstrap_servers=SERVERS)
    publisher = Publisher.create(settings)
    classifier = BusEntry.of(CLASSIFIER, settings).consumer()
    # What the tails, the outcome listener and ensure_topics build.
    tail = AIOKafkaConsumer(**client_options(settings), group_id=None)
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        for client in (publisher.producer, classifier, tail, admin):
            assert _hosts(client) == HOSTS, client
    finally:
        await publisher.stop()
        await classifier.stop()
        await tail.stop()
        await admin.close()


async def test_the_faststream_broker_gets_the_list_not_one_host() -> None:
    settings = load_settings(kafka_bootstrap_servers=SERVERS)
    broker = create_broker(settings)
    connection: dict[str, Any] = broker._connection_kwargs
    # FastStream builds its producer and admin client from these, its consumers with the
    # builder: each must see three brokers, where a string would be one host named
    # "h1.test:9092,h2.test:9093,...".
    producer = AIOKafkaProducer(bootstrap_servers=connection["bootstrap_servers"])
    consumer = broker.config.broker_config.builder(group_id="g")
    try:
        assert _hosts(producer) == HOSTS
        assert _hosts(consumer) == HOSTS
    finally:
        await producer.stop()
        await consumer.stop()
    # The flaw this replaces: FastStream given the raw string takes it as one host.
    raw = KafkaBroker(bootstrap_servers="h1.test:9092,h2.test:9093")
    assert raw._connection_kwargs["bootstrap_servers"] == ["h1.test:9092,h2.test:9093"]


def test_the_recommend_client_gets_the_list() -> None:
    settings = load_settings(kafka_bootstrap_servers=SERVERS)
    client = genres_client(settings)
    assert client._options["bootstrap_servers"] == settings.kafka_bootstrap_servers


def test_a_failure_names_the_brokers_joined() -> None:
    from aiokafka.errors import KafkaConnectionError

    settings = load_settings(kafka_bootstrap_servers=SERVERS)
    message, code = explain(KafkaConnectionError("Unable to bootstrap"), settings)
    assert message == ("cannot reach the Kafka broker at h1.test:9092,h2.test:9093,[::1]:9094")
    assert code == 3
