"""A denial by an ACL is named, never retried, never ready: on one Apache Kafka node that runs the
standard authorizer.

The node lets everyone do everything on resources without ACLs
(``allow.everyone.if.no.acl.found``), so a test denies one operation to the anonymous principal
(every client on a PLAINTEXT listener) with a DENY ACL on its own prefixed topic or group: the
rest of the node stays open. The secured cluster (SASL, TLS, deny by default) is the cluster
bed's; this is the refusal path on the bed every run has.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from genres.bootstrap import Role, running, serve
from genres.config import Settings, load_settings
from genres.embedded import free_port
from genres.errors import ClusterRefused, Refusal
from genres.kafka.broker import ensure_topics
from genres.kafka.entry import BusEntry
from genres.subscriptions import CLASSIFIER
from genres_contracts import topics
from tests.support import apache_kafka
from tests.support.process import GENRES

pytestmark = pytest.mark.skipif(
    not apache_kafka.available(), reason="needs Java 17+ and the Apache Kafka jars"
)

UNREACHABLE_DATABASE = "postgresql+asyncpg://genres@127.0.0.1:9/genres"
"""The roles tested here refuse before they touch the database."""


SASL_USER, SASL_PASSWORD = "genres", "right-password"


class AuthorizingKafka(apache_kafka.ApacheKafka):
    """The test node with the standard authorizer, open unless an ACL says otherwise, and a
    second listener taking SASL PLAIN logins (one user, ``SASL_USER``)."""

    sasl_port: int | None = None

    def _properties(self) -> dict[str, str]:
        self.sasl_port = free_port(self.host)
        sasl = f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}"
        settings = super()._properties()
        for key in ("listeners", "advertised.listeners"):
            settings[key] += f",{sasl}"
        settings["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        login = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required"
            f' user_{SASL_USER}="{SASL_PASSWORD}";'
        )
        return settings | {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "true",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": login,
        }


@pytest.fixture(scope="module")
def node() -> Iterator[AuthorizingKafka]:
    kafka = AuthorizingKafka()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.close()


def deny(node: AuthorizingKafka, kind: str, name: str, operation: str) -> None:
    """Deny ``operation`` on one resource to the anonymous principal, allowing it DESCRIBE
    unless that is what is denied: once a resource has an ACL, the open default no longer
    applies to it (confluent-kafka's admin: no Kafka scripts come with the jars)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    def binding(op: str, permission: AclPermissionType) -> AclBinding:
        return AclBinding(
            ResourceType[kind.upper()],
            name,
            ResourcePatternType.LITERAL,
            "User:ANONYMOUS",
            "*",
            AclOperation[op],
            permission,
        )

    wanted = [binding(operation, AclPermissionType.DENY)]
    if operation != "DESCRIBE":
        wanted.append(binding("DESCRIBE", AclPermissionType.ALLOW))
    admin = AdminClient({"bootstrap.servers": node.bootstrap_servers})
    for future in admin.create_acls(wanted).values():
        future.result(timeout=30)
    # Listed once the controller committed them; the node's authorizer follows within moments.
    match = AclBindingFilter(
        ResourceType[kind.upper()],
        name,
        ResourcePatternType.LITERAL,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    for _ in range(100):
        if len(admin.describe_acls(match).result(timeout=30)) == len(wanted):
            return
        time.sleep(0.05)
    raise AssertionError(f"the ACLs on {kind} {name} were not listed")


def settings_for(node: AuthorizingKafka, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": node.bootstrap_servers,
        "genres_topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
        "database_url": UNREACHABLE_DATABASE,
        "kafka_session_timeout_ms": 1000,
        "kafka_heartbeat_interval_ms": 300,
        "kafka_fetch_max_wait_ms": 10,
        "log_format": "console",
        "health_port": 0,
    }
    return load_settings(**(values | overrides))


async def test_a_denied_read_stops_the_responder_with_its_line_and_readyz_says_it(
    node: AuthorizingKafka,
) -> None:
    settings = settings_for(node, health_port=0)
    await ensure_topics(settings)
    failed = settings.topic(topics.GENRES_FAILED)
    deny(node, "topic", failed, "READ")
    health_settings = settings.model_copy(
        update={"health_host": "127.0.0.1", "health_port": free_port()}
    )
    async with running(health_settings, frozenset({Role.RESPONDER})) as service:
        refusal = await asyncio.wait_for(service.refusals.wait(), 30)
        assert service.health is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{service.health.url}/readyz") as response,
        ):
            status, body = response.status, await response.json()
    assert status == 503
    assert body["status"] == "refused"
    assert body["refused"] == str(refusal)
    assert body["checks"]["kafka"] == str(refusal)
    assert refusal.refusal is Refusal.AUTHORIZATION
    assert f"READ on topic {failed}" in str(refusal)


async def test_the_projector_refused_by_faststream_stops_serve_with_the_refusal(
    node: AuthorizingKafka,
) -> None:
    settings = settings_for(node)
    await ensure_topics(settings)
    classified = settings.topic(topics.GENRES_CLASSIFIED)
    deny(node, "topic", classified, "READ")
    with pytest.raises(ClusterRefused) as raised:
        await asyncio.wait_for(serve(settings, frozenset({Role.PROJECTOR})), 60)
    assert f"READ on topic {classified}" in str(raised.value)


async def test_a_denied_group_ends_the_commit_windows_fetching_and_it_stops_cleanly(
    node: AuthorizingKafka,
) -> None:
    from genres.classifier.consumer import ConcurrentConsumer

    settings = settings_for(node)
    await ensure_topics(settings)
    entry = BusEntry.of(CLASSIFIER, settings)
    deny(node, "group", entry.group, "READ")

    async def handler(record: Any) -> None:
        raise AssertionError("nothing is read from a denied group")

    consumer = ConcurrentConsumer(
        entry.consumer(), list(entry.topics), handler, records_in_flight=4
    )
    noted: list[BaseException] = []
    consumer.on_error = lambda error, partition: noted.append(error)
    await consumer.start()
    try:
        for _ in range(300):
            if any(isinstance(e, ClusterRefused) for e in noted):
                break
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    refusals = [e for e in noted if isinstance(e, ClusterRefused)]
    assert refusals, noted
    assert f"READ on group {entry.group}" in str(refusals[0])
    # Not retried: the one refusal ended the fetch loop.
    assert len(refusals) == 1


async def test_a_denied_describe_refuses_at_start_without_waiting_out_the_topics(
    node: AuthorizingKafka,
) -> None:
    settings = settings_for(node)
    uploaded = settings.topic(topics.TRACK_UPLOADED)
    deny(node, "topic", uploaded, "DESCRIBE")
    with pytest.raises(ClusterRefused) as raised:
        await asyncio.wait_for(ensure_topics(settings), 20)
    assert f"DESCRIBE on topic {uploaded}" in str(raised.value)


def test_genres_run_ends_on_a_refusal_with_one_error_line_and_exit_2(
    node: AuthorizingKafka,
) -> None:
    settings = settings_for(node)
    asyncio.run(ensure_topics(settings))
    failed = settings.topic(topics.GENRES_FAILED)
    deny(node, "topic", failed, "READ")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": node.bootstrap_servers,
        "GENRES_TOPIC_PREFIX": settings.genres_topic_prefix,
        "DATABASE_URL": UNREACHABLE_DATABASE,
        "HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [GENRES, "run", "responder"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    lines += [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    ours = [line for line in errors if line["logger"].startswith("genres")]
    assert len(ours) == 1, errors
    assert f"READ on topic {failed}" in ours[0]["message"]
    assert ours[0]["refusal"] == "authorization"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Kafka denies READ on topic"), last


async def ask(settings: Settings, reply_to: str) -> None:
    """A request for track 1 whose reply goes to ``reply_to``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(topics.RECOMMENDED_TAGS),
            b'{"track_id": 1}',
            key=b"1",
            headers=[
                (topics.REPLY_TO_HEADER, reply_to.encode()),
                (topics.CORRELATION_ID_HEADER, b"c1"),
            ],
        )
    finally:
        await producer.stop()


async def test_a_denied_write_to_the_services_reply_topics_stops_the_responder(
    node: AuthorizingKafka, database_url: str
) -> None:
    settings = settings_for(node, database_url=database_url)
    reply_to = settings.topic("genres.replies.denied")
    await ensure_topics(settings)
    await ensure_topics(settings, [reply_to])
    deny(node, "topic", reply_to, "WRITE")
    async with running(settings, frozenset({Role.RESPONDER})) as service:
        await ask(settings, reply_to)
        refusal = await asyncio.wait_for(service.refusals.wait(), 30)
    assert f"WRITE on topic {reply_to}" in str(refusal)


async def test_a_denied_reply_topic_of_another_name_is_the_callers_and_dead_lettered(
    node: AuthorizingKafka, database_url: str
) -> None:
    from aiokafka import AIOKafkaConsumer

    settings = settings_for(node, database_url=database_url)
    reply_to = settings.topic("elsewhere.denied")
    await ensure_topics(settings)
    await ensure_topics(settings, [reply_to])
    deny(node, "topic", reply_to, "WRITE")
    dlq = topics.dead_letter_topic(settings.topic(topics.RECOMMENDED_TAGS))
    reader = AIOKafkaConsumer(
        dlq, bootstrap_servers=node.bootstrap_servers, auto_offset_reset="earliest"
    )
    async with running(settings, frozenset({Role.RESPONDER})) as service:
        await reader.start()
        try:
            await ask(settings, reply_to)
            record = await asyncio.wait_for(reader.getone(), 30)
        finally:
            await reader.stop()
        assert service.refusals.first is None
    reason = dict(record.headers)[topics.DLQ_REASON_HEADER].decode()
    assert f"Kafka denies WRITE on topic {reply_to}" in reason


async def test_a_topic_that_never_appears_is_named_missing(node: AuthorizingKafka) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from genres.kafka.broker import wait_for_topics

    name = f"t{uuid.uuid4().hex[:8]}.never.created"
    admin = AIOKafkaAdminClient(bootstrap_servers=node.bootstrap_servers)
    await admin.start()
    try:
        with pytest.raises(ClusterRefused) as raised:
            await wait_for_topics(admin, [name], timeout_s=0.5)
    finally:
        await admin.close()
    assert raised.value.refusal is Refusal.MISSING_TOPIC
    assert name in str(raised.value)


async def test_readyz_answers_from_the_start_saying_what_it_waits_for(
    node: AuthorizingKafka, database_url: str
) -> None:
    settings = settings_for(
        node, database_url=database_url, health_host="127.0.0.1", health_port=free_port()
    )
    url = f"http://127.0.0.1:{settings.health_port}/readyz"
    answers: list[tuple[int, str | None]] = []
    stop = asyncio.Event()

    async def start() -> None:
        async with running(settings, frozenset({Role.PROJECTOR})):
            await stop.wait()

    starting = asyncio.create_task(start())
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                try:
                    async with session.get(url) as response:
                        body = await response.json()
                        answers.append((response.status, body.get("starting")))
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass  # not listening yet
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await starting
    # Creating the topics takes far longer than a poll: the first answer is while waiting.
    assert answers[0] == (503, "topics"), answers
    assert answers[-1] == (200, None), answers
    order = ["topics", "database", "roles"]
    seen = [order.index(step) for status, step in answers if step is not None]
    assert seen == sorted(seen), answers


@pytest.mark.parametrize(
    ("mechanism", "password", "says"),
    [
        ("PLAIN", "wrong-password", "Authentication failed: Invalid username or password"),
        ("SCRAM-SHA-512", SASL_PASSWORD, "does not offer SCRAM-SHA-512 on this listener"),
    ],
)
async def test_a_refused_login_is_named_at_start_not_unreachable(
    node: AuthorizingKafka, mechanism: str, password: str, says: str
) -> None:
    from genres.kafka.refusals import probe

    settings = settings_for(
        node,
        kafka_bootstrap_servers=f"{node.host}:{node.sasl_port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=SASL_USER,
        kafka_sasl_password=password,
    )
    with pytest.raises(ClusterRefused) as raised:
        await probe(settings)
    line = str(raised.value)
    assert raised.value.refusal is Refusal.AUTHENTICATION
    assert f"SASL {mechanism} as user {SASL_USER}" in line
    assert says in line
    assert password not in line


async def test_the_right_login_is_no_refusal(node: AuthorizingKafka) -> None:
    from genres.kafka.refusals import probe

    settings = settings_for(
        node,
        kafka_bootstrap_servers=f"{node.host}:{node.sasl_port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=SASL_USER,
        kafka_sasl_password=SASL_PASSWORD,
    )
    await probe(settings)


def test_genres_run_with_a_wrong_password_exits_2_naming_the_login(
    node: AuthorizingKafka,
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"{node.host}:{node.sasl_port}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": SASL_USER,
        "KAFKA_SASL_PASSWORD": "wrong-password",
        "GENRES_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        "DATABASE_URL": UNREACHABLE_DATABASE,
        "HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [GENRES, "run", "projector"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Kafka authentication failed: SASL PLAIN as user genres"), last
    assert "wrong-password" not in done.stdout + done.stderr
    logged = [
        json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line[:1] == "{"
    ]
    errors = [line for line in logged if line["level"] == "error"]
    assert [line["refusal"] for line in errors] == ["authentication"], errors
