"""A role's bus entry: the one way every consuming role plugs into Kafka.

Each consuming role (classifier, projector, responder) hands its declaration from
:mod:`genres.subscriptions` and the settings to :meth:`BusEntry.of`; the entry resolves the
deployment's topic and group names and the consumer options every role shares (start at the
earliest offset, the fetch wait, the session and heartbeat, the tolerant parsing of raw
records), and builds the role's consumer in one of two shapes:

- :meth:`BusEntry.subscriber`: a FastStream subscriber on the process's broker (projector:
  a batch acknowledged after its transaction; responder: acknowledged on hand-off);
- :meth:`BusEntry.consumer`: an aiokafka consumer for the classifier's commit window
  (``genres.classifier.consumer``), since FastStream either commits before a handler finishes
  or runs one record per partition at a time, and the classifier needs many records of a
  partition in flight with only their finished prefix committed.

:func:`create_broker` builds the process's FastStream broker those subscribers ride on, and
:class:`Subscribed` is what the rest of the service sees of such a subscriber (its consumer while
it runs, and whether FastStream is logging from its fetch loop): the one place that knows
FastStream's subscriber objects.

Backfill consumes no subscription: it publishes requests and reads outcomes without a group.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker, Topic
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel

from genres.config import Settings
from genres.kafka.broker import (
    bootstrap_servers,
    client_options,
    consumer_options,
    security_options,
)
from genres.kafka.records import tolerant_parser
from genres.subscriptions import Subscription

__all__ = ["BusEntry", "Subscribed", "create_broker"]


@dataclass(frozen=True)
class BusEntry:
    """A subscription resolved for this deployment (prefixed topics and group)."""

    subscription: Subscription
    settings: Settings
    topics: tuple[str, ...]
    group: str
    options: dict[str, Any]
    """Fetch wait, session and heartbeat (:func:`genres.kafka.broker.consumer_options`)."""

    @classmethod
    def of(
        cls, subscription: Subscription, settings: Settings, *, fetch_max_wait_ms: int | None = None
    ) -> BusEntry:
        return cls(
            subscription=subscription,
            settings=settings,
            topics=tuple(settings.topic(topic) for topic in subscription.topics),
            group=settings.group(subscription.group),
            options=consumer_options(settings, fetch_max_wait_ms=fetch_max_wait_ms),
        )

    def inputs(self) -> dict[str, tuple[str, type[BaseModel]]]:
        """Each consumed (prefixed) topic's canonical name and payload model."""
        return {
            self.settings.topic(each.topic): (each.topic, each.model)
            for each in self.subscription.inputs
        }

    def subscriber(self, broker: KafkaBroker, **options: Any) -> Any:
        """A FastStream subscriber for the role; ``options`` are FastStream's (and may
        override the shared fetch options)."""
        # FastStream creates a subscriber's topics at start unless told not to, with its own
        # defaults (one partition, one replica); the service creates them (``ensure_topics``)
        # or is told they exist. ``declare=False`` skips that silently, where the broker-wide
        # ``allow_auto_create_topics=False`` would log a WARNING at each start.
        return broker.subscriber(
            *(Topic(topic, declare=False) for topic in self.topics),
            group_id=self.group,
            auto_offset_reset="earliest",
            parser=tolerant_parser,
            **{**self.options, **options},
        )

    def subscribed(self, broker: KafkaBroker, **options: Any) -> Subscribed:
        """:meth:`subscriber`, seen through :class:`Subscribed`."""
        return Subscribed(self.subscriber(broker, **options))

    def consumer(self, **options: Any) -> AIOKafkaConsumer:
        """An aiokafka consumer committing by hand; ``options`` are aiokafka's."""
        return AIOKafkaConsumer(
            **client_options(self.settings),
            **self.options,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )


class Subscribed:
    """A role's FastStream subscriber as observability reads it (``ConsumerState`` in
    :mod:`genres.observability.progress`), and as the role registers its handler on it."""

    def __init__(self, subscriber: Any) -> None:
        self.subscriber = subscriber
        """FastStream's subscriber (call it with the handler to register that)."""

    def consumer(self) -> AIOKafkaConsumer | None:
        """Its aiokafka consumer, which exists only while the subscriber runs."""
        consumer: AIOKafkaConsumer | None = getattr(self.subscriber, "consumer", None)
        return consumer

    def fetching(self) -> bool:
        """Whether the calling code runs in the subscriber's own fetch loop: FastStream logs
        a failed fetch there (and retries it), naming no subscriber. Its loop is a task the
        subscriber keeps in ``tasks`` while it runs."""
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no running loop: a log line from a thread
            return False
        return current is not None and current in getattr(self.subscriber, "tasks", ())


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """The same security settings in FastStream's form (the TLS context carries the client
    certificate for mutual TLS)."""
    options = security_options(settings)
    protocol = options["security_protocol"]
    context = options.get("ssl_context")
    if not protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context) if context is not None else None
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return kinds[options["sasl_mechanism"]](
        username=options["sasl_plain_username"] or "",
        password=options["sasl_plain_password"] or "",
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def create_broker(settings: Settings, **extra: Any) -> KafkaBroker:
    """FastStream's broker; its producer waits for all in-sync replicas."""
    return KafkaBroker(
        # A list, always: FastStream takes a string as one host, commas and all.
        bootstrap_servers=bootstrap_servers(settings),
        client_id=settings.kafka_client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=1,
        compression_type=settings.compression_type,
        security=faststream_security(settings),
        # Through our handlers and format; its per-message lines are DEBUG noise at INFO.
        logger=logging.getLogger("genres.faststream"),
        log_level=logging.DEBUG,
        **extra,
    )
