"""The secured cluster proves itself: every way in works for the right credentials and fails,
by name, for the wrong ones; nothing is allowed without an ACL; a broker may crash."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.support.kafka_cluster import BROKERS, SecuredCluster


@dataclass(frozen=True)
class Rule:
    """An ACL in ``genres.kafka.acls.Acl``'s shape, built by hand."""

    resource_type: str
    name: str
    pattern: str
    operation: str


def _produce(config: dict[str, Any], topic: str, values: list[bytes]) -> list[KafkaError | None]:
    """Produce ``values`` with acks=all; each one's delivery error (None: written)."""
    reports: list[KafkaError | None] = []
    producer = Producer(
        config | {"acks": "all", "enable.idempotence": True, "message.timeout.ms": 30000}
    )
    for value in values:
        producer.produce(topic, value, on_delivery=lambda error, _msg: reports.append(error))
    left = producer.flush(40)
    assert left == 0, f"{left} records neither written nor refused"
    return reports


def _read(config: dict[str, Any], topic: str, count: int, group: str) -> list[bytes]:
    """Read up to ``count`` records of ``topic`` from the start, failing on a consumer error."""
    consumer = Consumer(config | {"group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.list_topics(topic, timeout=10).topics[topic]
        if found.error is not None:
            raise AssertionError(found.error)
        consumer.assign([TopicPartition(topic, p, 0) for p in found.partitions])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise AssertionError(message.error())
            values.append(message.value())
        return values
    finally:
        consumer.close()


def _first_error(config: dict[str, Any], timeout: float = 20.0) -> KafkaError:
    """The first error a client with ``config`` reports while connecting."""
    errors: list[KafkaError] = []
    producer = Producer(config | {"error_cb": errors.append})
    deadline = time.monotonic() + timeout
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors, "the client connected"
    return errors[0]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_each_sasl_mechanism_writes_over_tls(
    cluster: SecuredCluster, topic: str, mechanism: str
) -> None:
    cluster.set_acls("User:guest", [Rule("topic", topic, "literal", "WRITE")])
    assert _produce(cluster.client_config("guest", mechanism), topic, [b"x"]) == [None]


def test_a_client_certificate_is_its_common_names_user(cluster: SecuredCluster, topic: str) -> None:
    """``CN=genres`` is ``User:genres``: the ACL of the SASL user of that name lets it in."""
    cluster.set_acls("User:genres", [Rule("topic", topic, "literal", "WRITE")])
    assert _produce(cluster.client_config("genres", "mTLS"), topic, [b"x"]) == [None]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "mTLS"])
async def test_the_services_client_gets_in_with_the_settings_env(
    cluster: SecuredCluster, topic: str, mechanism: str
) -> None:
    """aiokafka (the service's client), configured from exactly what ``settings_env`` gives a
    service process: the bed's certificates, key password and addresses suit it."""
    env = cluster.settings_env("genres", mechanism)
    cluster.set_acls("User:genres", [Rule("topic", topic, "literal", "WRITE")])
    tls = create_ssl_context(
        cafile=env["KAFKA_SSL_CAFILE"],
        certfile=env.get("KAFKA_SSL_CERTFILE"),
        keyfile=env.get("KAFKA_SSL_KEYFILE"),
        password=env.get("KAFKA_SSL_KEY_PASSWORD"),
    )
    sasl = {
        "sasl_mechanism": env.get("KAFKA_SASL_MECHANISM", "PLAIN"),
        "sasl_plain_username": env.get("KAFKA_SASL_USERNAME"),
        "sasl_plain_password": env.get("KAFKA_SASL_PASSWORD"),
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        security_protocol=env["KAFKA_SECURITY_PROTOCOL"],
        ssl_context=tls,
        acks="all",
        enable_idempotence=env["KAFKA_ENABLE_IDEMPOTENCE"] == "true",
        **sasl,
    )
    await producer.start()
    try:
        written = await producer.send_and_wait(topic, b"x")
    finally:
        await producer.stop()
    assert written.offset == 0


def test_nothing_is_allowed_without_an_acl(cluster: SecuredCluster, topic: str) -> None:
    guest = cluster.client_config("guest", "SCRAM-SHA-512")
    group = f"{topic}.group"

    [denied] = _produce(guest, topic, [b"denied"])
    assert denied is not None
    assert denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    written = [f"{i}".encode() for i in range(5)]
    cluster.set_acls(
        "User:guest",
        [
            Rule("topic", topic, "literal", "WRITE"),
            Rule("topic", topic, "literal", "READ"),
            Rule("group", group, "literal", "READ"),
        ],
    )
    assert _produce(guest, topic, written) == [None] * len(written)
    assert sorted(_read(guest, topic, len(written), group)) == written
    # the group still allowed, the topic no longer
    cluster.set_acls("User:guest", [Rule("group", group, "literal", "READ")])
    with pytest.raises(AssertionError, match="TOPIC_AUTHORIZATION_FAILED"):
        _read(guest, topic, 1, group)


def test_a_broker_killed_under_acks_all_loses_nothing_and_rejoins(
    cluster: SecuredCluster, topic: str
) -> None:
    state = cluster.partitions(topic)
    assert all(isr == list(range(BROKERS)) for _leader, isr in state.values()), state
    victim = cluster.leader(topic, 0)
    admin = cluster.admin_config()
    values = [f"{i}".encode() for i in range(300)]
    reports: list[KafkaError | None] = []
    producer = Producer(admin | {"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for index, value in enumerate(values):
        if index == 100:
            cluster.kill(victim)
        producer.produce(topic, value, on_delivery=lambda error, _msg: reports.append(error))
        producer.poll(0.01)
    assert producer.flush(60) == 0
    assert reports == [None] * len(values)
    led = {leader for leader, _isr in cluster.partitions(topic).values()}
    assert victim not in led

    cluster.start(victim)
    cluster.wait_in_sync(topic)
    got = _read(admin, topic, len(values), f"{topic}.check")
    assert sorted(got, key=int) == values


def test_a_wrong_password_fails_authentication(cluster: SecuredCluster) -> None:
    config = cluster.client_config("guest", "SCRAM-SHA-512") | {"sasl.password": "wrong"}
    error = _first_error(config)
    assert error.code() == KafkaError._AUTHENTICATION, error
    assert "SCRAM-SHA-512" in error.str()


def test_a_wrong_ca_fails_verification(cluster: SecuredCluster) -> None:
    assert cluster.tls is not None
    config = cluster.client_config("guest") | {"ssl.ca.location": str(cluster.tls.foreign_ca_file)}
    error = _first_error(config)
    assert error.code() in (KafkaError._SSL, KafkaError._TRANSPORT), error
    assert "certificate verify failed" in error.str()


@pytest.mark.parametrize(
    ("certificate", "alert"),
    # Java's TLS names neither the expiry nor the CA in its alert
    [
        ("expired_cert_file", "alert certificate unknown"),
        ("foreign_cert_file", "alert bad certificate"),
    ],
)
def test_a_bad_client_certificate_fails_the_handshake(
    cluster: SecuredCluster, certificate: str, alert: str
) -> None:
    assert cluster.tls is not None
    path = getattr(cluster.tls, certificate)
    config = cluster.client_config("genres", "mTLS") | {"ssl.certificate.location": str(path)}
    error = _first_error(config)
    assert error.code() in (KafkaError._SSL, KafkaError._TRANSPORT), error
    assert alert in error.str()
