"""The service's Kafka clients never ask the broker to create a topic on their own.

A metadata request (v4 and later) says whether the broker may create the unknown topics it
names (``allow_auto_topic_creation``), and a broker with ``auto.create.topics.enable=true``
(Apache Kafka's default) then creates them with its defaults. aiokafka 0.14 always says yes,
from every consumer, producer and admin client, with no option to say otherwise (FastStream's
``allow_auto_create_topics`` is about its own admin calls, not this flag). So a reply published
after its requester deleted its reply topic, or a consumer of a misspelt topic, would create a
topic nobody manages, with settings nobody chose. The service creates its topics itself
(``ensure_topics``) or, with ``KAFKA_CREATE_TOPICS=false``, refuses to start without them.

:func:`forbid_auto_creation` makes every metadata request of the process say no, by giving
aiokafka's client modules a request class whose flag defaults to false; the wire format and
everything else are aiokafka's own.
"""

from __future__ import annotations

import aiokafka.admin.client
import aiokafka.client
from aiokafka.protocol.metadata import MetadataRequest


class NoAutoCreation(MetadataRequest):  # type: ignore[misc]
    """A metadata request that never asks the broker to create the topics it names."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False
    ) -> None:
        super().__init__(topics, allow_auto_topic_creation=bool(allow_auto_topic_creation))


def forbid_auto_creation() -> None:
    """From now on, no aiokafka client of this process lets the broker create a topic it names
    in a metadata request (idempotent)."""
    aiokafka.client.MetadataRequest = NoAutoCreation
    aiokafka.admin.client.MetadataRequest = NoAutoCreation
