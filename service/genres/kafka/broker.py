"""The Kafka connection: client options, topic creation and metadata.

FastStream's broker is built in :mod:`genres.kafka.entry`, with the subscriptions it carries:
what uses no subscription (the producer, the group-less tails, ``migrate`` and ``backfill``)
never imports FastStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Collection, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError
from aiokafka.protocol.metadata import MetadataRequest

from genres.config import Settings
from genres.errors import ConfigurationError
from genres.kafka.acls import ROLES, topics_used
from genres.kafka.refusals import (
    TOPIC_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC_OR_PARTITION,
    missing_topics,
    not_authorized,
)
from genres_contracts import topics

log = logging.getLogger(__name__)

# Every topic the service reads or writes (dead-letter topics aside).
SERVICE_TOPICS = (
    topics.TRACK_UPLOADED,
    topics.CLASSIFICATION_REQUESTED,
    topics.GENRES_CLASSIFIED,
    topics.GENRES_FAILED,
    topics.RECOMMENDED_TAGS,
)


def all_topics(settings: Settings) -> list[str]:
    """Every topic a role or command reads or writes, dead-letter topics included (those of
    the topics consumed in a group: nothing dead-letters ``track.genres_failed``)."""
    return topics_used(settings, ROLES)


def bootstrap_servers(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return settings.kafka_bootstrap_servers


def security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's security keyword arguments (SASL and/or TLS), from the settings."""
    protocol = settings.kafka_security_protocol.upper()
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Options shared by every aiokafka client the service creates."""
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": settings.kafka_client_id,
        **security_options(settings),
    }


def consumer_options(settings: Settings, *, fetch_max_wait_ms: int | None = None) -> dict[str, Any]:
    """Consumer options tuned for latency: a fetch returns after at most this wait."""
    return {
        "fetch_max_wait_ms": (
            settings.kafka_fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms
        ),
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
    }


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create the topics that are missing; returns those it created.

    Returns once the broker serves every wanted topic (see :func:`wait_for_topics`)."""
    wanted = list(all_topics(settings) if names is None else names)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            new_topics = [
                NewTopic(
                    name,
                    num_partitions=settings.kafka_topic_partitions,
                    replication_factor=settings.kafka_replication_factor,
                )
                for name in missing
            ]
            # Another instance may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new_topics)
            log.info("created topics", extra={"topics": missing})
        await wait_for_topics(admin, wanted)
        return missing
    finally:
        await admin.close()


async def wait_for_topics(
    admin: AIOKafkaAdminClient, names: Iterable[str], timeout_s: float = 30.0
) -> dict[str, list[int]]:
    """Wait until the broker's metadata shows every topic with a leader for each partition;
    returns each topic's partitions.

    Apache Kafka (KRaft) answers CreateTopics once its controller has committed the topics;
    the brokers learn of them a moment later, and a client asking in between hears "unknown
    topic" or "not leader". Whoever created the topics, another instance included, they are
    served when this returns. Raises ``TimeoutError`` naming the topics still missing, or
    ``ClusterRefused`` when the cluster denies describing one (at once) or knows none of those
    still missing at the end.
    """
    wanted = list(dict.fromkeys(names))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = {entry["topic"]: entry for entry in await admin.describe_topics(wanted)}
        denied = [
            name
            for name in wanted
            if name in described and described[name]["error_code"] == TOPIC_AUTHORIZATION_FAILED
        ]
        if denied:
            raise not_authorized(
                f"DESCRIBE on topic {', '.join(denied)}", TopicAuthorizationFailedError()
            )
        pending = [
            name
            for name in wanted
            if name not in described
            or described[name]["error_code"] != 0
            or not described[name]["partitions"]
            or any(p["error_code"] != 0 or p["leader"] < 0 for p in described[name]["partitions"])
        ]
        if not pending:
            return {
                name: sorted(p["partition"] for p in described[name]["partitions"])
                for name in wanted
            }
        if asyncio.get_running_loop().time() > deadline:
            unknown = [
                name
                for name in pending
                if name in described and described[name]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
            ]
            if unknown and len(unknown) == len(pending):
                raise missing_topics(unknown)
            raise TimeoutError(
                f"the broker does not serve these topics after {timeout_s:g} s: "
                + ", ".join(pending)
            )
        await asyncio.sleep(0.05)


METADATA_ATTEMPT_SECONDS = 1.5


async def leaders(
    client: Any, names: Collection[str], *, attempt_timeout: float = METADATA_ATTEMPT_SECONDS
) -> dict[str, dict[int, int]]:
    """Each topic of ``names`` the cluster has: its partitions and their leaders (-1: none), from
    one metadata request to the first broker of ``client`` (an aiokafka ``AIOKafkaClient``) that
    answers. No topic is created by asking, none is added to what the client tracks, and a topic
    the cluster lacks is left out without a log line. Each broker gets ``attempt_timeout``
    seconds (one that hangs, frozen or cut off, must not hide the others). Raises
    ``KafkaError`` when no broker answers."""
    request = MetadataRequest(sorted(names), allow_auto_topic_creation=False)
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(nodes)
    failure: BaseException | None = None
    for node in nodes:
        try:
            response = await asyncio.wait_for(client.send(node, request), attempt_timeout)
        except (KafkaError, TimeoutError) as exc:
            failure = exc
            continue
        found: dict[str, dict[int, int]] = {}
        for entry in response.topics:
            # (error, topic, partitions) in version 0, (error, topic, internal, partitions) after
            error, topic, partitions = entry[0], entry[1], entry[-1]
            if error == 0:
                found[topic] = {p[1]: p[2] for p in partitions}
        return found
    last = repr(failure) if isinstance(failure, TimeoutError) else failure
    raise KafkaError(f"no broker answered a metadata request: {last or 'none known'}")
