"""The requester on a real broker: timeouts, and replies matched by correlation id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from genres.bus.broker import ensure_topics
from genres.bus.requester import Requester, RequestTimeout
from genres.config import Settings, load_settings
from genres_contracts import topics
from tests.support.bus import serving

pytestmark = pytest.mark.integration

ECHO = "test.echo"


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        genres_topic_prefix=topic_prefix,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        classifier_backend="local",
    )


@contextlib.asynccontextmanager
async def echo_server(settings: Settings, *, shuffle: bool = True) -> AsyncIterator[list[int]]:
    """Answers each request on ``test.echo`` with ``{"echo": <value>}``, out of order."""
    assert settings.kafka_bootstrap_servers is not None
    topic = settings.topic(ECHO)
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=0)
    await consumer.start()
    await producer.start()
    answered: list[int] = []

    async def reply(record: object) -> None:
        headers = dict(record.headers)  # type: ignore[attr-defined]
        await asyncio.sleep(random.random() * 0.05 if shuffle else 0)
        # a stray reply first: an unknown correlation id must be ignored
        await producer.send_and_wait(
            headers[topics.REPLY_TO_HEADER].decode(),
            b'{"echo": "stray"}',
            headers=[(topics.CORRELATION_ID_HEADER, b"not-a-request")],
        )
        await producer.send_and_wait(
            headers[topics.REPLY_TO_HEADER].decode(),
            json.dumps({"echo": json.loads(record.value)}).encode(),  # type: ignore[attr-defined]
            headers=[(topics.CORRELATION_ID_HEADER, headers[topics.CORRELATION_ID_HEADER])],
        )
        answered.append(1)

    async with serving(consumer, producer, reply):
        yield answered


async def test_a_request_nobody_answers_raises_request_timeout(settings: Settings) -> None:
    await ensure_topics(settings)
    async with Requester(settings) as requester:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeout, match="no reply"):
            await requester.request(topics.RECOMMENDED_TAGS, {"track_id": 1}, key=b"1", timeout=0.5)
        assert 0.45 <= loop.time() - started < 3.0
        assert requester.pending == 0
        with pytest.raises(RequestTimeout):
            await requester.recommended_tags(1, timeout=0.3)


async def test_concurrent_requests_get_their_own_replies(settings: Settings) -> None:
    async with echo_server(settings) as answered, Requester(settings) as requester:
        payloads = [{"n": n, "text": f"request {n}"} for n in range(50)]
        replies = await asyncio.gather(
            *(
                requester.request(ECHO, payload, key=str(n).encode(), timeout=15)
                for n, payload in enumerate(payloads)
            )
        )
        assert [json.loads(reply)["echo"] for reply in replies] == payloads
        assert len(answered) == 50
        assert requester.pending == 0


async def test_bytes_payloads_and_sequential_requests(settings: Settings) -> None:
    async with echo_server(settings, shuffle=False), Requester(settings) as requester:
        for n in range(5):
            reply = await requester.request(ECHO, str(n).encode(), timeout=10)
            assert json.loads(reply) == {"echo": n}
