"""Kafka fixtures.

* ``kafka_bootstrap`` (session): bootstrap servers of a broker for the whole run:
  ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a testcontainers Kafka when Docker answers, else
  an embedded Tansu (``genres.embedded.EmbeddedBroker``), stopped at the end of the session.
* ``topic_prefix`` (function): a unique ``t<8 hex>.`` prefix for topic and group names
  (the service's ``GENRES_TOPIC_PREFIX``), so tests sharing the broker do not see each other.
* ``kafka`` (function): a :class:`KafkaTestBed` bundling both, with helpers.
* ``embedded_broker`` (function): a private Tansu for fault tests (freeze, kill, restart);
  restarting it empties it (memory storage).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from genres.embedded import EmbeddedBroker, create_topics, fast_consumer_options
from tests.support.infra import docker_available

KAFKA_IMAGE = os.environ.get("GENRES_TESTS_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")


@dataclass(frozen=True)
class KafkaTestBed:
    """A broker address plus this test's name prefix."""

    bootstrap_servers: str
    prefix: str
    #: "env", "docker" or "tansu": what ``kafka_bootstrap`` runs on
    kind: str = "tansu"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def is_tansu(self) -> bool:
        return self.kind == "tansu"

    def consumer_options(self) -> dict[str, int]:
        """Fast consumer settings (see ``genres.embedded.fast_consumer_options``)."""
        return fast_consumer_options()

    def env(self) -> dict[str, str]:
        """Environment variables pointing the service at this broker and prefix."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "GENRES_TOPIC_PREFIX": self.prefix,
        }

    async def create_topics(self, *names: str, partitions: int = 3) -> list[str]:
        """Create the prefixed topics ``names``; returns the full names."""
        full = [self.topic(name) for name in names]
        await create_topics(self.bootstrap_servers, full, partitions)
        return full


@dataclass(frozen=True)
class _Broker:
    bootstrap_servers: str
    kind: str


def _docker_kafka() -> Iterator[_Broker] | None:
    try:
        from testcontainers.kafka import KafkaContainer
    except ImportError:
        return None

    def run() -> Iterator[_Broker]:
        with KafkaContainer(KAFKA_IMAGE) as container:
            yield _Broker(container.get_bootstrap_server(), "docker")

    return run()


@pytest.fixture(scope="session")
def _kafka_broker() -> Iterator[_Broker]:
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if from_env:
        yield _Broker(from_env, "env")
        return
    if docker_available():
        runner = _docker_kafka()
        if runner is not None:
            try:
                broker = next(runner)
            except Exception as exc:  # fall back to Tansu rather than fail the run
                warnings.warn(f"testcontainers Kafka failed ({exc!r}); using Tansu", stacklevel=1)
            else:
                yield broker
                runner.close()
                return
    with EmbeddedBroker() as tansu:
        yield _Broker(tansu.bootstrap_servers, "tansu")


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka_broker: _Broker) -> str:
    """Bootstrap servers of the session's broker."""
    return _kafka_broker.bootstrap_servers


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix for this test's topics and consumer groups."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def kafka(_kafka_broker: _Broker, topic_prefix: str) -> KafkaTestBed:
    """The session's broker with this test's prefix."""
    return KafkaTestBed(_kafka_broker.bootstrap_servers, topic_prefix, _kafka_broker.kind)


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A private Tansu for this test only (freeze/thaw/kill/restart at will)."""
    with EmbeddedBroker() as broker:
        yield broker


__all__ = [
    "KafkaTestBed",
    "embedded_broker",
    "kafka",
    "kafka_bootstrap",
    "topic_prefix",
]
