"""Records from a client nobody on this project wrote: librdkafka, through confluent-kafka.

Producers in other languages compress their batches with any codec Kafka defines, and the
broker hands them to consumers as written. Each consumer kind of the service is fed batches in
every codec by librdkafka, interleaved on every partition:

* the classifier (group consumer, commit window): uploads;
* the projector (FastStream batch subscriber): ``GenresClassified`` events;
* the responder (FastStream subscriber): requests, answered to a librdkafka reader;
* the group-less readers (``TopicTail``: the responder's outcome listener, reply readers,
  backfill's watcher): outcome events.

And librdkafka reads what the service's producers write, in every ``KAFKA_COMPRESSION``.

confluent-kafka is synchronous: its calls run in a thread so the in-process service keeps
its event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import ALL_ROLES, running
from genres.config import Settings
from genres.kafka.broker import ensure_topics
from genres.kafka.producer import Publisher
from genres.kafka.tail import TopicTail
from genres_contracts import GenresClassified, ModelRef, Prediction, RecommendedTags, topics
from tests.support.broker import KafkaTestBed
from tests.support.waiting import holds_within

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PARTITIONS = 3


def librdkafka_producer(kafka: KafkaTestBed, codec: str) -> Producer:
    # A batch per flush: small lingers keep each codec's records in batches of their own.
    return Producer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "compression.type": codec,
            "linger.ms": 5,
            "enable.idempotence": not kafka.is_tansu,
        }
    )


def librdkafka_reader(kafka: KafkaTestBed, topic: str) -> Consumer:
    """A group-less librdkafka consumer assigned every partition of ``topic`` from its start."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": "unused",  # required by the client; nothing joins or commits
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
    return consumer


def produce_interleaved(
    kafka: KafkaTestBed,
    topic: str,
    values: dict[int, bytes],
    headers: Callable[[int], list[tuple[str, bytes]]] = lambda _: [],
) -> dict[int, str]:
    """Send each value, keyed by its id, rotating codecs so that every partition holds
    batches of every codec one after another; returns the codec each id went with."""
    producers = {codec: librdkafka_producer(kafka, codec) for codec in CODECS}
    sent: dict[int, str] = {}
    ids = sorted(values)
    # A few records per batch; each round sends one batch per codec to every partition.
    for start in range(0, len(ids), 2 * PARTITIONS):
        chunk = ids[start : start + 2 * PARTITIONS]
        codec = CODECS[(start // (2 * PARTITIONS)) % len(CODECS)]
        for index, item in enumerate(chunk):
            producers[codec].produce(
                topic,
                value=values[item],
                key=str(item).encode(),
                partition=index % PARTITIONS,
                headers=headers(item),
            )
            sent[item] = codec
        assert producers[codec].flush(30) == 0, f"{codec} records left unsent"
    return sent


def read_all(kafka: KafkaTestBed, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
    """``count`` records of ``topic`` read by librdkafka from its start."""
    consumer = librdkafka_reader(kafka, topic)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            records.append(message)
    finally:
        consumer.close()
    return records


def upload(track_id: int) -> bytes:
    return json.dumps(
        {"track_id": track_id, "file_id": "f", "audio_url": f"https://cdn.test/{track_id}.mp3"}
    ).encode()


def classified(track_id: int) -> bytes:
    return (
        GenresClassified(
            event_id=str(uuid.uuid4()),
            source_event_id=str(uuid.uuid4()),
            track_id=track_id,
            file_id="f",
            predictions=[Prediction(name="ambient electronic", confidence=0.5)],
            model=ModelRef(name="librdkafka", version="1"),
            classified_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )


async def insert_tracks(engine: AsyncEngine, ids: range) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tracks (id, file_id, audio_url) "
                "SELECT i, 'f', 'https://cdn.test/' || i || '.mp3' "
                "FROM unnest(CAST(:ids AS bigint[])) AS i"
            ),
            {"ids": list(ids)},
        )


async def projected(engine: AsyncEngine, ids: set[int], timeout: float = 60.0) -> set[int]:
    """Which of ``ids`` hold predictions for file ``f`` once all do, or ``timeout`` passed."""
    done: set[int] = set()

    async def all_done() -> bool:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT id FROM tracks WHERE id = ANY(:ids) "
                    "AND extra ? 'genre_predictions' AND extra->>'genre_predictions_file_id' = 'f'"
                ),
                {"ids": list(ids)},
            )
        done.clear()
        done.update(row[0] for row in rows)
        return done >= ids

    await holds_within(all_done, within=timeout, interval=0.1)
    return done


@pytest.fixture
def partitions3(replicate_settings: Settings) -> Settings:
    return replicate_settings.model_copy(update={"kafka_topic_partitions": PARTITIONS})


async def test_every_codec_from_librdkafka_is_classified_projected_and_answered(
    kafka: KafkaTestBed, partitions3: Settings, engine: AsyncEngine
) -> None:
    uploads = range(1, 31)  # classifier: 5 codecs x 3 partitions x 2 records
    events = range(101, 131)  # projector: classified events straight from librdkafka
    await insert_tracks(engine, uploads)
    await insert_tracks(engine, events)
    reply_topic = kafka.topic("librdkafka.replies")
    await ensure_topics(partitions3.model_copy(update={"kafka_topic_partitions": 1}), [reply_topic])

    async with running(partitions3, ALL_ROLES):
        upload_codecs = await asyncio.to_thread(
            produce_interleaved,
            kafka,
            kafka.topic(topics.TRACK_UPLOADED),
            {i: upload(i) for i in uploads},
        )
        event_codecs = await asyncio.to_thread(
            produce_interleaved,
            kafka,
            kafka.topic(topics.GENRES_CLASSIFIED),
            {i: classified(i) for i in events},
        )
        done = await projected(engine, {*uploads, *events})
        assert set(uploads) - done == set(), "uploads not projected"
        assert set(events) - done == set(), "events not projected"

        # Requests for both kinds of track, each codec, answered to librdkafka's reader.
        asked = [*uploads[:5], *events[:5]]
        await asyncio.to_thread(
            produce_interleaved,
            kafka,
            kafka.topic(topics.RECOMMENDED_TAGS),
            {i: json.dumps({"track_id": i, "limit": 3}).encode() for i in asked},
            lambda i: [
                (topics.REPLY_TO_HEADER, reply_topic.encode()),
                (topics.CORRELATION_ID_HEADER, f"corr-{i}".encode()),
            ],
        )
        replies = await asyncio.to_thread(read_all, kafka, reply_topic, len(asked))

    assert set(upload_codecs.values()) == set(CODECS)
    assert set(event_codecs.values()) == set(CODECS)
    answered = {}
    for message in replies:
        correlation = dict(message.headers() or [])[topics.CORRELATION_ID_HEADER]
        reply = RecommendedTags.model_validate_json(message.value().decode("utf-8"))
        answered[correlation.decode()] = reply
    assert set(answered) == {f"corr-{i}" for i in asked}
    for i in asked:
        reply = answered[f"corr-{i}"]
        assert reply.track_id == i
        assert reply.error is None
        assert reply.pending is False
        assert 1 <= len(reply.tags) <= 3


@pytest.mark.parametrize("codec", CODECS)
async def test_librdkafka_reads_what_the_service_publishes_in_each_codec(
    kafka: KafkaTestBed, settings: Settings, codec: str
) -> None:
    settings = settings.model_copy(update={"kafka_compression": codec})
    await ensure_topics(settings)
    publisher = Publisher.create(settings)
    await publisher.start()
    try:
        for track_id in range(1, 6):
            await publisher.publish(
                topics.GENRES_CLASSIFIED,
                GenresClassified.model_validate_json(classified(track_id)),
                key=str(track_id).encode(),
            )
    finally:
        await publisher.stop()

    records = await asyncio.to_thread(read_all, kafka, kafka.topic(topics.GENRES_CLASSIFIED), 5)
    values = [json.loads(message.value().decode("utf-8")) for message in records]
    assert sorted(value["track_id"] for value in values) == [1, 2, 3, 4, 5]
    assert all(GenresClassified.model_validate(value) for value in values)
    assert {message.key() for message in records} == {str(i).encode() for i in range(1, 6)}


async def test_a_group_less_reader_reads_every_codec(
    kafka: KafkaTestBed, settings: Settings
) -> None:
    topic = kafka.topic(topics.GENRES_FAILED)
    await ensure_topics(settings.model_copy(update={"kafka_topic_partitions": PARTITIONS}), [topic])
    seen: list[int] = []
    tail = TopicTail(settings, [topic], lambda record: seen.append(int(record.key or b"0")))
    await tail.start()
    try:
        sent = await asyncio.to_thread(
            produce_interleaved, kafka, topic, {i: b'{"any": "json"}' for i in range(1, 31)}
        )
        await holds_within(lambda: len(seen) >= len(sent), within=30.0)
    finally:
        await tail.stop()
    assert sorted(seen) == sorted(sent)
    assert set(sent.values()) == set(CODECS)
