"""No client of the service makes the broker create a topic by asking about it.

Run on a private Tansu whatever the session's broker: Tansu creates a topic that a metadata
request names and allows it to create, as Apache Kafka does with
``auto.create.topics.enable=true`` (its default). The session's Apache Kafka is started with
that off (so that the service's own creation is what the tests exercise), where no client
could create a topic this way.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest

from genres.config import load_settings
from genres.kafka.broker import client_options
from genres.kafka.producer import Publisher, ReplyTopicMissing
from tests.support.tansu import TansuUnderTest


async def _names(admin: AIOKafkaAdminClient) -> set[str]:
    return set(await admin.list_topics())


async def test_the_services_clients_never_create_a_topic_by_asking_about_it(
    embedded_broker: TansuUnderTest,
) -> None:
    settings = load_settings(kafka_bootstrap_servers=embedded_broker.bootstrap_servers)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        # The control: a request that allows it makes Tansu create the topic.
        await admin._send_request(MetadataRequest(["asked"], allow_auto_topic_creation=True))
        assert "asked" in await _names(admin)

        described = await admin.describe_topics(["described"])
        assert [entry["error_code"] for entry in described] == [UnknownTopicOrPartitionError.errno]

        consumer = AIOKafkaConsumer(**client_options(settings), group_id=None)
        await consumer.start()
        try:
            consumer.subscribe(["subscribed"])
            await consumer.getmany(timeout_ms=500)
        finally:
            await consumer.stop()

        publisher = Publisher.create(settings, request_timeout_ms=1000)
        await publisher.start()
        try:
            gone = (KafkaTimeoutError, UnknownTopicOrPartitionError, ReplyTopicMissing)
            with pytest.raises(gone):
                # As the responder replies to a reply topic its requester deleted.
                await publisher.publish_json("published", {"reply": 1}, key=b"1", headers=[])
        finally:
            await publisher.stop()

        await asyncio.sleep(0.2)
        assert await _names(admin) & {"described", "subscribed", "published"} == set()
    finally:
        await admin.close()
