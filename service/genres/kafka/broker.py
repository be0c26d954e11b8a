"""The Kafka connection: client options, topic creation and metadata.

FastStream's broker is built in :mod:`genres.kafka.entry`, with the subscriptions it carries:
what uses no subscription (the producer, the group-less tails, ``migrate`` and ``backfill``)
never imports FastStream.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import ConnectionGroup
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.metadata import MetadataRequest

from genres.config import Settings
from genres.errors import ConfigurationError
from genres.kafka.acls import ROLES, topics_used
from genres.kafka.metadata import forbid_auto_creation
from genres.kafka.refusals import missing_topics, not_authorized
from genres.kafka.tls import ssl_context
from genres_contracts import topics

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Every topic the service reads or writes (dead-letter topics aside).
SERVICE_TOPICS = (
    topics.TRACK_UPLOADED,
    topics.CLASSIFICATION_REQUESTED,
    topics.GENRES_CLASSIFIED,
    topics.GENRES_FAILED,
    topics.RECOMMENDED_TAGS,
)


TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailedError.errno
CLUSTER_AUTHORIZATION_FAILED = ClusterAuthorizationFailedError.errno
AUTHORIZATION_FAILED = (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED)
UNKNOWN_TOPIC = UnknownTopicOrPartitionError.errno


def all_topics(settings: Settings) -> list[str]:
    """Every topic a role or command reads or writes, dead-letter topics included (those of
    the topics consumed in a group: nothing dead-letters ``track.genres_failed``)."""
    return topics_used(settings, ROLES)


def bootstrap_servers(settings: Settings) -> list[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` as every client takes it: a list (FastStream reads a string
    as one host). Every client of the service gets its servers here, so this is also where
    brokers are told never to create topics on their own (:mod:`genres.kafka.metadata`)."""
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError("KAFKA_BOOTSTRAP_SERVERS is not set")
    forbid_auto_creation()
    return list(settings.kafka_bootstrap_servers)


def security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's security keyword arguments (SASL and/or TLS), from the settings."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
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
    """Create the topics that are missing; returns those it created (another instance may
    create some first). With ``KAFKA_CREATE_TOPICS=false`` it creates none and checks that
    each exists instead (``ClusterRefused``, ``MISSING_TOPIC``, naming every missing one).

    A refused creation or description raises ``ClusterRefused`` (``AUTHORIZATION``) naming the
    operation and the topics; any other refusal a ``ConfigurationError`` naming each topic and
    Kafka's error. Returns once the broker serves every wanted topic (:func:`wait_for_topics`).
    """
    wanted = list(dict.fromkeys(all_topics(settings) if names is None else names))
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        asking = Asking(admin)
        if settings.kafka_create_topics:
            created = await _create_missing(asking, settings, wanted)
        else:
            await _check_existing(asking, wanted)
            created = []
        await wait_for_topics(asking, wanted)
        return created
    finally:
        await admin.close()


class Asking:
    """An admin client whose metadata requests are asked again while they fail in a way a
    retry cures: aiokafka's admin asks a broker picked at random among those the metadata
    lists, and a broker just gone (down, not yet fenced by the controller) is still listed
    (``NodeNotReadyError``). The next pick is likely another broker."""

    def __init__(self, admin: AIOKafkaAdminClient, *, timeout_s: float = 30.0) -> None:
        self._admin = admin
        self._timeout_s = timeout_s

    async def create_topics(self, new_topics: list[NewTopic]) -> Any:
        return await self._admin.create_topics(new_topics)

    async def list_topics(self) -> list[str]:
        return await self._again(self._admin.list_topics)

    async def describe_topics(self, names: list[str]) -> list[Any]:
        return await self._again(lambda: self._admin.describe_topics(names))

    async def _again(self, ask: Callable[[], Awaitable[_T]]) -> _T:
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        while True:
            try:
                return await ask()
            except KafkaError as exc:
                if not exc.retriable or asyncio.get_running_loop().time() > deadline:
                    raise
                log.debug("metadata request failed, asking again: %r", exc)
            await asyncio.sleep(0.1)


def new_topic(settings: Settings, name: str) -> NewTopic:
    """A topic as the service creates it: ``KAFKA_TOPIC_PARTITIONS`` partitions, replicated as
    ``KAFKA_REPLICATION_FACTOR`` says or, unset, as the broker's ``default.replication.factor``
    (-1, KIP-464).

    aiokafka's ``NewTopic`` reads -1 as "see the replica assignment" and refuses it without one
    (and a factor with one): an empty assignment passes its check and sends none. aiokafka
    sends CreateTopics v3, and KIP-464 documents -1 from v4, but brokers do not check the
    version: Apache Kafka 4.4 and Tansu 0.6 both create such a topic with their default
    (tried here).
    """
    replication = settings.kafka_replication_factor or -1
    return NewTopic(
        name,
        num_partitions=settings.kafka_topic_partitions,
        replication_factor=replication,
        replica_assignments={} if replication == -1 else None,
    )


async def _create_missing(admin: Asking, settings: Settings, wanted: list[str]) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    response = await admin.create_topics([new_topic(settings, name) for name in missing])
    return read_creation(response.to_object()["topic_errors"])


def read_creation(topic_errors: Iterable[dict[str, Any]]) -> list[str]:
    """The topics a CreateTopics response says were created (logged, when any); raises for
    those it refused. Already existing is fine (another instance created it); a transient
    error is left to :func:`wait_for_topics`, which waits for the topic or names it."""
    created: list[str] = []
    refused: dict[int, list[str]] = {}
    failures: list[str] = []
    for entry in topic_errors:
        name, code = entry["topic"], entry["error_code"]
        if code == 0:
            created.append(name)
        elif code in (TOPIC_ALREADY_EXISTS, *AUTHORIZATION_FAILED):
            refused.setdefault(code, []).append(name)
        else:
            error = for_code(code)
            detail = error.message + (
                f" ({entry['error_message']})" if entry.get("error_message") else ""
            )
            if error.retriable:
                log.warning("topic %s not created yet: %s; waiting for it", name, detail)
            else:
                failures.append(f"{name}: {detail}")
    if created:
        log.info("created topics", extra={"topics": created})
    if refused.get(TOPIC_AUTHORIZATION_FAILED):
        raise not_authorized(
            f"CREATE on {_named(refused[TOPIC_AUTHORIZATION_FAILED])}",
            TopicAuthorizationFailedError(),
        )
    if refused.get(CLUSTER_AUTHORIZATION_FAILED):
        raise not_authorized(
            f"CREATE on the cluster (for {_named(refused[CLUSTER_AUTHORIZATION_FAILED])})",
            ClusterAuthorizationFailedError(),
        )
    if failures:
        raise ConfigurationError("cannot create topic " + "; ".join(failures))
    return created


async def _check_existing(admin: Asking, wanted: list[str]) -> None:
    """Raise ``ClusterRefused`` unless every wanted topic exists and may be described."""
    described = {
        entry["topic"]: entry["error_code"] for entry in await admin.describe_topics(wanted)
    }
    _refuse_undescribable(described, wanted)
    missing = [name for name in wanted if described.get(name, UNKNOWN_TOPIC) == UNKNOWN_TOPIC]
    if missing:
        raise missing_topics(missing)


def _refuse_undescribable(codes: dict[str, int], wanted: Iterable[str]) -> None:
    # Kafka answers TOPIC_AUTHORIZATION_FAILED for a topic the principal may not DESCRIBE,
    # whether it exists or not: waiting would never change that.
    denied = [name for name in wanted if codes.get(name) == TOPIC_AUTHORIZATION_FAILED]
    if denied:
        raise not_authorized(f"DESCRIBE on {_named(denied)}", TopicAuthorizationFailedError())


def _named(names: list[str]) -> str:
    """``topic a`` or ``topic a (and 2 more: b, c)``: one line, however many."""
    first, rest = names[0], names[1:]
    return f"topic {first}" + (f" (and {len(rest)} more: {', '.join(rest)})" if rest else "")


async def wait_for_topics(
    admin: AIOKafkaAdminClient | Asking, names: Iterable[str], timeout_s: float = 30.0
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
    asking = admin if isinstance(admin, Asking) else Asking(admin, timeout_s=timeout_s)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = {entry["topic"]: entry for entry in await asking.describe_topics(wanted)}
        _refuse_undescribable(
            {name: entry["error_code"] for name, entry in described.items()}, wanted
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
                if name in described and described[name]["error_code"] == UNKNOWN_TOPIC
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
    the first broker of ``client`` (an aiokafka ``AIOKafkaClient``) that answers a metadata
    request. No topic is created by asking, none is added to what the client tracks, and a topic
    the cluster lacks is left out without a log line. Every broker is asked at once, each for
    at most ``attempt_timeout`` seconds: one that hangs (frozen, cut off) must not hide the
    others, nor spend the caller's budget before they are asked (the stall watchdog gives a
    sample 0.6 s under a 3 s bound, less than one hung attempt). Raises ``KafkaError`` when no
    broker answers. Asked on the client's coordination connections, which carry no produce
    (no ``names``: whether the cluster answers at all)."""
    request = MetadataRequest(sorted(names), allow_auto_topic_creation=False)
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(nodes)

    async def ask(node: int) -> Any:
        # Not on the connections that carry produces: a broker answers one connection's
        # requests in order, and an acks=all produce waiting for a replica that died holds
        # them for seconds (until the replica leaves the ISR) while the broker is well.
        sent = client.send(node, request, group=ConnectionGroup.COORDINATION)
        return await asyncio.wait_for(sent, attempt_timeout)

    asked = [asyncio.ensure_future(ask(node)) for node in nodes]
    failure: BaseException | None = None
    try:
        for answer in asyncio.as_completed(asked):
            try:
                response = await answer
            except (KafkaError, TimeoutError) as exc:
                failure = exc
                continue
            found: dict[str, dict[int, int]] = {}
            for entry in response.topics:
                # (error, topic, partitions) in version 0, (error, topic, internal, partitions)
                error, topic, partitions = entry[0], entry[1], entry[-1]
                if error == 0:
                    found[topic] = {p[1]: p[2] for p in partitions}
            return found
    finally:
        for each in asked:
            each.cancel()
        # their outcomes read: none is reported as never retrieved
        await asyncio.gather(*asked, return_exceptions=True)
    last = repr(failure) if isinstance(failure, TimeoutError) else failure
    raise KafkaError(f"no broker answered a metadata request: {last or 'none known'}")
