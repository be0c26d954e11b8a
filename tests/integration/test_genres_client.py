"""The genres client (``genres_contracts.kafka``) on a real broker, against the real responder
and against an echo server that answers out of order, with stray replies and compressed
batches."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.config import Settings
from genres.embedded import free_port
from genres.kafka.broker import ensure_topics
from genres_contracts import RecommendedTags, topics
from genres_contracts.kafka import (
    ClientClosed,
    GenresClient,
    InvalidRequest,
    RequestTimedOut,
    TrackNotFound,
    Unavailable,
    read_reply,
)
from tests.integration.test_responder import (
    PREDICTIONS,
    Service,
    add_track,
    cached,
    running_responder,
)
from tests.support.broker import KafkaTestBed
from tests.support.bus import reader, serving
from tests.support.service import service_settings

ECHO = "test.echo"


@pytest.fixture
def bus_settings(kafka: KafkaTestBed) -> Settings:
    return service_settings(kafka, None, classifier_backend="local")


@pytest.fixture
async def service(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Service]:
    async with running_responder(settings, engine) as running:
        yield running


@pytest.fixture
async def client_errors() -> AsyncIterator[list[str]]:
    """What the event loop's exception handler got (aiokafka reports "Unclosed ..." there)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(str(context.get("message"))))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


async def nothing_left_unclosed(client_errors: list[str]) -> None:
    """Collect what the test let go of: nothing unclosed may reach the loop's handler."""
    gc.collect()
    await asyncio.sleep(0)
    assert client_errors == []


@contextlib.asynccontextmanager
async def echo_server(
    settings: Settings, *, shuffle: bool = True, compression: str | None = None
) -> AsyncIterator[list[int]]:
    """Answers each request on ``test.echo`` with ``{"echo": <value>}``, out of order, each
    after a stray reply with an unknown correlation id."""
    assert settings.kafka_bootstrap_servers is not None
    topic = settings.topic(ECHO)
    await ensure_topics(settings, [topic])
    consumer = reader(settings.kafka_bootstrap_servers, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        linger_ms=0,
        compression_type=compression,
    )
    await consumer.start()
    await producer.start()
    answered: list[int] = []

    async def reply(record: Any) -> None:
        headers = dict(record.headers)
        await asyncio.sleep(random.random() * 0.05 if shuffle else 0)
        reply_to = headers[topics.REPLY_TO_HEADER].decode()
        await producer.send_and_wait(
            reply_to,
            b'{"echo": "stray"}',
            headers=[(topics.CORRELATION_ID_HEADER, b"not-a-request")],
        )
        await producer.send_and_wait(
            reply_to,
            json.dumps({"echo": json.loads(record.value)}).encode(),
            headers=[(topics.CORRELATION_ID_HEADER, headers[topics.CORRELATION_ID_HEADER])],
        )
        answered.append(1)

    async with serving(consumer, producer, reply):
        yield answered


def client_for(settings: Settings, **options: Any) -> GenresClient:
    """A client configured as another service would: address and prefix only."""
    assert settings.kafka_bootstrap_servers is not None
    return GenresClient(
        settings.kafka_bootstrap_servers, topic_prefix=settings.genres_topic_prefix, **options
    )


async def topic_names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


# -- against the responder ---------------------------------------------------------------------


async def test_a_track_with_predictions_gets_its_tags(
    service: Service, engine: AsyncEngine
) -> None:
    await add_track(engine, 668, extra=cached(), own_tags=("Ambient Electronic",))
    async with client_for(service.settings) as client:
        reply = await client.recommended_tags(668, limit=2, wait_ms=0, timeout=10.0)
    assert reply == RecommendedTags(
        track_id=668,
        tags=[
            {"name": "experimental electronic", "score": 0.4},
            {"name": "synth-pop electronic", "score": 0.3},
        ],
        available=True,
        pending=False,
    )


async def test_an_unknown_track_raises_track_not_found(service: Service) -> None:
    async with client_for(service.settings) as client:
        with pytest.raises(TrackNotFound, match="track 424242 does not exist") as raised:
            await client.recommended_tags(424242, timeout=10.0)
    assert raised.value.track_id == 424242
    assert raised.value.reply is not None
    assert raised.value.reply.tags == []


async def test_a_request_the_responder_refuses_raises_invalid_request(service: Service) -> None:
    async with client_for(service.settings) as client:
        # A newer client could send what this service's contract refuses: the service says so.
        raw = await client.request(
            topics.RECOMMENDED_TAGS, b'{"track_id": 7, "limit": 99}', key=b"7", timeout=10.0
        )
        with pytest.raises(InvalidRequest, match="limit") as raised:
            read_reply(raw)
        assert raised.value.reply is not None
        assert raised.value.reply.track_id == 7
        # This client refuses it before sending anything.
        with pytest.raises(InvalidRequest, match="limit: Input should be less than or equal"):
            await client.recommended_tags(7, limit=99)
        assert client.pending == 0


async def test_fifty_concurrent_requests_get_their_own_replies(
    service: Service, engine: AsyncEngine
) -> None:
    # Ten tracks, each with its own best tag, asked in a shuffled order with varying limits.
    for track_id in range(100, 110):
        own = [{"name": f"genre {track_id}", "confidence": 0.9}, *PREDICTIONS]
        await add_track(engine, track_id, extra={**cached(), "genre_predictions": own})
    asks = [(100 + n % 10, 1 + n % 6) for n in range(50)]
    random.Random(11).shuffle(asks)
    async with client_for(service.settings) as client:
        replies = await asyncio.gather(
            *(client.recommended_tags(t, limit=limit, timeout=20.0) for t, limit in asks)
        )
        assert client.pending == 0
    for (track_id, limit), reply in zip(asks, replies, strict=True):
        assert reply.track_id == track_id
        assert len(reply.tags) == limit
        assert reply.tags[0].name == f"genre {track_id}"


async def test_no_classifier_is_an_answer_not_an_error(
    make_settings: Callable[..., Settings], engine: AsyncEngine
) -> None:
    settings = make_settings(classifier_backend="none")
    await add_track(engine, 60, file_id="f60")
    async with running_responder(settings, engine), client_for(settings) as client:
        reply = await client.recommended_tags(60, timeout=10.0)
    assert (reply.available, reply.tags, reply.pending) == (False, [], False)


# -- the client on its own ---------------------------------------------------------------------


async def test_a_request_nobody_answers_raises_request_timed_out(bus_settings: Settings) -> None:
    await ensure_topics(bus_settings)
    async with client_for(bus_settings) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimedOut, match=r"no reply .* within 0.5 s") as raised:
            await client.recommended_tags(1, timeout=0.5)
        assert 0.45 <= loop.time() - started < 3.0
        assert raised.value.topic == bus_settings.topic(topics.RECOMMENDED_TAGS)
        assert client.pending == 0


async def test_concurrent_requests_match_replies_by_correlation_id(bus_settings: Settings) -> None:
    async with echo_server(bus_settings) as answered, client_for(bus_settings) as client:
        payloads = [{"n": n, "text": f"request {n}"} for n in range(50)]
        replies = await asyncio.gather(
            *(
                client.request(ECHO, json.dumps(p).encode(), key=str(n).encode(), timeout=15)
                for n, p in enumerate(payloads)
            )
        )
        assert [json.loads(reply)["echo"] for reply in replies] == payloads
        assert len(answered) == 50
        assert client.pending == 0


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_replies_are_read(bus_settings: Settings, codec: str) -> None:
    async with (
        echo_server(bus_settings, shuffle=False, compression=codec),
        client_for(bus_settings) as client,
    ):
        for n in range(3):
            assert json.loads(await client.request(ECHO, str(n).encode(), timeout=10)) == {
                "echo": n
            }


async def test_close_fails_waiting_requests_and_deletes_the_reply_topic(
    bus_settings: Settings, client_errors: list[str]
) -> None:
    await ensure_topics(bus_settings)
    client = client_for(bus_settings)
    with pytest.raises(ClientClosed, match="not started"):
        await client.request(ECHO, b"1")
    await client.start()
    assert client.reply_topic.startswith(f"{bus_settings.genres_topic_prefix}genres.replies.")
    assert client.reply_topic in await topic_names(bus_settings.kafka_bootstrap_servers or "")
    waiting = asyncio.create_task(client.recommended_tags(1, wait_ms=5000, timeout=30))
    await asyncio.sleep(0.2)
    await client.close()
    with pytest.raises(ClientClosed, match="closed while the request waited"):
        await waiting
    with pytest.raises(ClientClosed, match="closed"):
        await client.recommended_tags(1)
    await client.close()  # again: nothing happens
    assert client.reply_topic not in await topic_names(bus_settings.kafka_bootstrap_servers or "")
    del client, waiting
    await nothing_left_unclosed(client_errors)


async def test_an_unreachable_broker_raises_unavailable_and_leaves_nothing_open(
    client_errors: list[str],
) -> None:
    client = GenresClient(f"127.0.0.1:{free_port()}", start_timeout=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable, match=r"cannot reach the Kafka broker at 127\.0\.0\.1:\d+$"):
        await client.start()
    assert loop.time() - started < 5.0
    with pytest.raises(ClientClosed):
        await client.recommended_tags(1)
    del client
    await nothing_left_unclosed(client_errors)


async def test_a_broker_that_never_answers_raises_unavailable_after_the_start_timeout(
    client_errors: list[str],
) -> None:
    """A listener that accepts connections and says nothing, like a frozen broker."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable, match=r"did not answer within 1 s"):
            async with GenresClient(f"127.0.0.1:{port}", start_timeout=1.0):
                raise AssertionError("started")
        assert 0.9 <= loop.time() - started < 4.0
    finally:
        server.close()
    await nothing_left_unclosed(client_errors)
