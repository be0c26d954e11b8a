"""The responder on a real broker and a real PostgreSQL, asked through the genres client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import Role, running
from genres.config import Settings
from genres.database.schema import classification_requests, tags, track_tags, tracks
from genres.kafka.client import genres_client
from genres.kafka.parsing import parse
from genres.kafka.producer import Publisher
from genres.responder.assembly import ResponderHandle
from genres.responder.runtime import ResponderRuntime
from genres.responder.tracks import SqlMarkers, track_view
from genres_contracts import (
    ClassificationRequested,
    GenresClassified,
    ModelRef,
    Prediction,
    RecommendedTags,
    topics,
)
from genres_contracts.kafka import GenresClient, InvalidRequest, TrackNotFound, read_reply
from tests.support.broker import KafkaTestBed
from tests.support.bus import reader
from tests.support.service import service_settings

PREDICTIONS = [
    {"name": "ambient electronic", "confidence": 0.5},
    {"name": "experimental electronic", "confidence": 0.4},
    {"name": "synth-pop electronic", "confidence": 0.3},
    {"name": "techno electronic", "confidence": 0.2},
    {"name": "house electronic", "confidence": 0.1},
]


@pytest.fixture
def settings(kafka: KafkaTestBed, database_url: str) -> Settings:
    return service_settings(kafka, database_url, classifier_backend="local")


async def add_track(
    engine: AsyncEngine,
    track_id: int,
    *,
    file_id: str | None = "f1",
    audio_url: str | None = "https://cdn.example/audio/f1.mp3",
    extra: dict[str, Any] | None = None,
    own_tags: tuple[str, ...] = (),
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(tracks).values(
                id=track_id, file_id=file_id, audio_url=audio_url, extra=extra or {}
            )
        )
        for name in own_tags:
            found = (
                await connection.execute(select(tags.c.id).where(tags.c.name == name))
            ).scalar()
            if found is None:
                found = (
                    await connection.execute(insert(tags).values(name=name).returning(tags.c.id))
                ).scalar_one()
            await connection.execute(insert(track_tags).values(track_id=track_id, tag_id=found))


def cached(file_id: str = "f1") -> dict[str, Any]:
    return {"genre_predictions": PREDICTIONS, "genre_predictions_file_id": file_id, "other": 1}


@dataclass
class Service:
    settings: Settings
    runtime: ResponderRuntime
    client: GenresClient
    publisher: Publisher


@contextlib.asynccontextmanager
async def running_responder(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Service]:
    """The responder as the composition root runs it, on this test's engine."""
    async with running(settings, frozenset({Role.RESPONDER}), engine=engine) as service:
        handle = service.roles[Role.RESPONDER.value]
        assert isinstance(handle, ResponderHandle)
        async with genres_client(settings) as client:
            yield Service(settings, handle.runtime, client, service.publisher)


@pytest.fixture
async def service(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Service]:
    async with running_responder(settings, engine) as running:
        yield running


@contextlib.asynccontextmanager
async def reading(settings: Settings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer of a (prefixed) topic from its beginning."""
    consumer = reader(settings.kafka_bootstrap_servers, topic)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def drain(consumer: AIOKafkaConsumer, seconds: float) -> list[ConsumerRecord[Any, Any]]:
    """Every record that arrives within ``seconds``."""
    records: list[ConsumerRecord[Any, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        batches = await consumer.getmany(timeout_ms=int(left * 1000))
        for batch in batches.values():
            records.extend(batch)
    return records


async def first(consumer: AIOKafkaConsumer, seconds: float = 15) -> ConsumerRecord[Any, Any]:
    async with asyncio.timeout(seconds):
        return await consumer.getone()


def names(reply: RecommendedTags) -> list[str]:
    return [tag.name for tag in reply.tags]


# -- cached predictions ------------------------------------------------------------------------


async def test_cached_predictions_minus_own_tags_case_insensitively(
    service: Service, engine: AsyncEngine
) -> None:
    await add_track(engine, 1, extra=cached(), own_tags=("Experimental Electronic", "rock"))
    reply = await service.client.recommended_tags(1, limit=3)
    assert reply == RecommendedTags(
        track_id=1,
        tags=[
            {"name": "ambient electronic", "score": 0.5},
            {"name": "synth-pop electronic", "score": 0.3},
            {"name": "techno electronic", "score": 0.2},
        ],
        available=True,
        pending=False,
    )
    assert names(await service.client.recommended_tags(1, limit=1)) == ["ambient electronic"]
    assert len((await service.client.recommended_tags(1, limit=20)).tags) == 4


async def test_a_cached_answer_reads_the_track_in_one_statement(engine: AsyncEngine) -> None:
    from sqlalchemy import event

    await add_track(engine, 2, extra=cached(), own_tags=("a", "b"))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        view = await track_view(engine, 2)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert view is not None
    assert sorted(view.tag_names) == ["a", "b"]
    assert view.predictions_file_id == "f1"
    assert view.predictions is not None
    assert len(view.predictions) == 5
    assert len(statements) == 1


async def test_predictions_for_another_file_are_stale(
    service: Service, engine: AsyncEngine
) -> None:
    await add_track(engine, 3, file_id="f2", extra=cached("f1"))
    legacy = {"genre_predictions": PREDICTIONS}
    await add_track(engine, 4, file_id="f4", extra=legacy)  # legacy row, the track has a file
    await add_track(engine, 5, file_id=None, audio_url=None, extra=legacy)  # legacy, no file
    assert (await service.client.recommended_tags(3)).pending is True
    assert (await service.client.recommended_tags(4)).pending is True
    legacy_reply = await service.client.recommended_tags(5, limit=2)
    assert names(legacy_reply) == ["ambient electronic", "experimental electronic"]
    assert legacy_reply.pending is False


# -- on demand ---------------------------------------------------------------------------------


async def test_one_on_demand_request_for_many_concurrent_asks(
    service: Service, engine: AsyncEngine, settings: Settings
) -> None:
    await add_track(engine, 10, file_id="f10", audio_url="https://cdn.example/a/f10.mp3")
    async with reading(settings, settings.topic(topics.CLASSIFICATION_REQUESTED)) as requested:
        replies = await asyncio.gather(
            *(service.client.recommended_tags(10, wait_ms=0) for _ in range(20))
        )
        assert all(r.pending and r.tags == [] and r.available and r.error is None for r in replies)
        records = await drain(requested, 2.0)
    assert len(records) == 1
    event = parse(ClassificationRequested, records[0].value)
    assert (event.track_id, event.file_id, event.reason) == (10, "f10", "on_demand")
    assert str(event.audio_url) == "https://cdn.example/a/f10.mp3"
    assert records[0].key == b"10"


async def test_a_waiting_request_gets_the_outcome_and_does_not_block_others(
    service: Service, engine: AsyncEngine, settings: Settings
) -> None:
    await add_track(engine, 20, file_id="f20", own_tags=("Techno Electronic",))
    await add_track(engine, 21, extra=cached())
    loop = asyncio.get_running_loop()
    async with reading(settings, settings.topic(topics.CLASSIFICATION_REQUESTED)) as requested:
        started = loop.time()
        waiting = asyncio.create_task(service.client.recommended_tags(20, limit=3, wait_ms=20_000))
        request = parse(ClassificationRequested, (await first(requested)).value)
        assert (request.track_id, request.file_id) == (20, "f20")

        # meanwhile, other requests are answered at once
        for _ in range(3):
            other = await service.client.recommended_tags(21, limit=1)
            assert names(other) == ["ambient electronic"]
        assert not waiting.done()

        # the test acts as the classifier
        outcome = GenresClassified(
            source_event_id=request.event_id or "x",
            track_id=20,
            file_id="f20",
            predictions=[Prediction.model_validate(p) for p in PREDICTIONS],
            model=ModelRef(name="test", version="1"),
            classified_at=datetime.now(UTC),
        )
        # an outcome for another file of the same track does not answer the request
        stale = outcome.model_copy(update={"file_id": "old", "predictions": []})
        await service.publisher.publish(topics.GENRES_CLASSIFIED, stale, key=b"20")
        await service.publisher.publish(topics.GENRES_CLASSIFIED, outcome, key=b"20")
        reply = await asyncio.wait_for(waiting, 15)
    assert loop.time() - started < 15
    assert reply.pending is False
    assert names(reply) == ["ambient electronic", "experimental electronic", "synth-pop electronic"]


async def test_a_wait_that_ends_first_answers_pending(
    service: Service, engine: AsyncEngine
) -> None:
    await add_track(engine, 30, file_id="f30")
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await service.client.recommended_tags(30, wait_ms=700)
    assert reply.pending is True
    assert reply.tags == []
    assert 0.6 <= loop.time() - started < 5


async def test_a_track_that_cannot_be_classified_gets_no_tags(
    service: Service, engine: AsyncEngine
) -> None:
    await add_track(engine, 40, audio_url=None)
    await add_track(engine, 41, audio_url="not a url")
    for track_id in (40, 41):
        reply = await service.client.recommended_tags(track_id, wait_ms=0)
        assert (reply.tags, reply.available, reply.pending, reply.error) == ([], True, False, None)


async def test_claims_are_exclusive_until_stale(engine: AsyncEngine) -> None:
    markers = SqlMarkers(engine)
    at = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
    before = at - timedelta(seconds=60)
    claims = await asyncio.gather(
        *(markers.claim(1, "f", at=at, stale_before=before) for _ in range(10))
    )
    assert claims.count(True) == 1
    assert await markers.claim(1, "g", at=at, stale_before=before) is True  # another file
    later = at + timedelta(seconds=30)
    assert await markers.claim(1, "f", at=later, stale_before=at) is False  # not older
    assert await markers.claim(1, "f", at=later, stale_before=later) is True  # reclaimed
    await markers.release(1, "g")
    async with engine.connect() as connection:
        rows = (await connection.execute(select(classification_requests))).all()
    assert [(r.track_id, r.file_id, r.requested_at) for r in rows] == [(1, "f", later)]


# -- errors ------------------------------------------------------------------------------------


async def test_unknown_track_is_not_found(service: Service) -> None:
    with pytest.raises(TrackNotFound, match="999999 does not exist") as raised:
        await service.client.recommended_tags(999_999)
    assert raised.value.track_id == 999_999
    reply = raised.value.reply
    assert reply is not None
    assert reply.error is not None
    assert reply.error.kind == "not_found"
    assert (reply.track_id, reply.tags, reply.pending) == (999_999, [], False)


@pytest.mark.parametrize(
    ("value", "track_id"),
    [
        (b"{not json", None),
        (b'{"track_id": 7, "limit": 99}', 7),
        (b'{"track_id": "x"}', None),
        (b"", None),
    ],
)
async def test_unreadable_requests_get_invalid_request(
    service: Service, value: bytes, track_id: int | None
) -> None:
    raw = await service.client.request(topics.RECOMMENDED_TAGS, value, timeout=10)
    reply = json.loads(raw)
    assert reply["error"]["kind"] == "invalid_request"
    assert reply["error"]["message"]
    assert (reply["track_id"], reply["tags"], reply["pending"]) == (track_id, [], False)
    with pytest.raises(InvalidRequest, match="invalid request: ") as raised:
        read_reply(raw)
    assert raised.value.reply is not None
    assert raised.value.reply.track_id == track_id


async def test_a_request_without_reply_to_is_dead_lettered(
    service: Service, settings: Settings
) -> None:
    topic = settings.topic(topics.RECOMMENDED_TAGS)
    await service.publisher.producer.send_and_wait(
        topic, b'{"track_id": 1}', key=b"1", headers=[("correlation_id", b"abc")]
    )
    async with reading(settings, topics.dead_letter_topic(topic)) as dlq:
        record = await first(dlq)
    headers = dict(record.headers)
    assert record.value == b'{"track_id": 1}'
    assert record.key == b"1"
    assert b"reply_to" in headers[topics.DLQ_REASON_HEADER]
    assert headers[topics.DLQ_ORIGINAL_TOPIC_HEADER] == topic.encode()


async def test_odd_correlation_ids_are_echoed_as_they_came(
    service: Service, engine: AsyncEngine, settings: Settings
) -> None:
    await add_track(engine, 50, extra=cached())
    topic = settings.topic(topics.RECOMMENDED_TAGS)
    reply_topic = service.client.reply_topic
    async with reading(settings, reply_topic) as replies:
        await service.publisher.producer.send_and_wait(
            topic,
            b'{"track_id": 50, "limit": 1}',
            headers=[("reply_to", reply_topic.encode()), ("correlation_id", b"\xff\xfe odd")],
        )
        record = await first(replies)
    assert dict(record.headers)[topics.CORRELATION_ID_HEADER] == b"\xff\xfe odd"
    assert json.loads(record.value)["tags"] == [{"name": "ambient electronic", "score": 0.5}]


async def test_without_a_classifier_nothing_is_available(
    kafka: KafkaTestBed, database_url: str, engine: AsyncEngine
) -> None:
    settings = service_settings(kafka, database_url, classifier_backend="none")
    await add_track(engine, 60, file_id="f60")
    await add_track(engine, 61, extra=cached())
    async with (
        running_responder(settings, engine) as running,
        reading(settings, settings.topic(topics.CLASSIFICATION_REQUESTED)) as requested,
    ):
        for track_id in (60, 61):
            reply = await running.client.recommended_tags(track_id, wait_ms=1000)
            assert (reply.available, reply.tags, reply.pending) == (False, [], False)
        assert await drain(requested, 0.5) == []
        with pytest.raises(TrackNotFound):
            await running.client.recommended_tags(62)


async def test_a_reply_to_a_topic_that_does_not_exist_is_one_warning_and_creates_nothing(
    service: Service,
    engine: AsyncEngine,
    settings: Settings,
    kafka: KafkaTestBed,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if kafka.is_tansu:
        pytest.skip("Tansu creates a topic that a client asks about")
    await add_track(engine, 70, extra=cached())
    topic = settings.topic(topics.RECOMMENDED_TAGS)
    gone = f"{kafka.prefix}genres.replies.gone-1"
    for correlation in (b"a", b"b"):
        await service.publisher.producer.send_and_wait(
            topic,
            b'{"track_id": 70, "limit": 1}',
            headers=[("reply_to", gone.encode()), ("correlation_id", correlation)],
        )
    # A later request to a live reply topic is answered: the two before it were handled.
    reply = await service.client.recommended_tags(70, limit=1, timeout=20)
    assert [tag.name for tag in reply.tags] == ["ambient electronic"]
    async with reading(settings, topics.dead_letter_topic(topic)) as dlq:
        assert await drain(dlq, 1.0) == []  # a requester's problem, not a bad request
    said = [r for r in caplog.records if gone in r.getMessage()]
    assert [(r.levelname, r.name) for r in said] == [("WARNING", "genres.responder.runtime")]
    assert "does not exist" in said[0].getMessage()
    cluster = await service.publisher.producer.client.fetch_all_metadata()
    assert gone not in cluster.topics()
