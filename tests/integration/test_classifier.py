"""The classifier role on a real broker and PostgreSQL, paying the fake Replicate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import Role, running
from genres.config import Settings
from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import header, producer, read_topic, send_json, values
from tests.support.fake_replicate import FakeReplicate

CLASSIFIER = frozenset({Role.CLASSIFIER})


@asynccontextmanager
async def classifying(kafka: KafkaTestBed, settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """The classifier role running, and a producer to send it records."""
    async with running(settings, CLASSIFIER), producer(kafka.bootstrap_servers) as client:
        yield client


async def collect_classified(
    kafka: KafkaTestBed, *, count: int
) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_topic(
        kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED), count=count
    )


def upload(track_id: int, file_id: str = "f1", **extra: Any) -> dict[str, Any]:
    return {
        "track_id": track_id,
        "file_id": file_id,
        "audio_url": f"https://cdn.test/{track_id}/{file_id}.mp3",
        **extra,
    }


async def test_uploads_are_classified_and_published_with_their_source_event(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
) -> None:
    async with classifying(kafka, replicate_settings) as client:
        for track_id in range(1, 11):
            await send_json(
                client,
                kafka.topic(topics.TRACK_UPLOADED),
                upload(track_id, event_id=f"up-{track_id}", auto_tag=track_id == 3),
                key=str(track_id),
            )
        records = await collect_classified(kafka, count=10)

    events = {event["track_id"]: event for event in values(records)}
    assert sorted(events) == list(range(1, 11))
    for track_id, event in events.items():
        assert event["source_event_id"] == f"up-{track_id}"
        assert event["file_id"] == "f1"
        assert event["model"]["name"] == "mtg/effnet-discogs"
        assert len(event["predictions"]) == 10
        assert event["auto_tag"] is (track_id == 3)
    assert all(
        record.key == str(json_track).encode()
        for record, json_track in zip(
            records, [e["track_id"] for e in values(records)], strict=True
        )
    )
    assert sum(fake_replicate.stats.creations_per_url.values()) == 10


async def test_duplicate_uploads_are_classified_once_and_republished(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
) -> None:
    async with classifying(kafka, replicate_settings) as client:
        for _ in range(3):
            await send_json(client, kafka.topic(topics.TRACK_UPLOADED), upload(7), key="7")
        await send_json(
            client,
            kafka.topic(topics.CLASSIFICATION_REQUESTED),
            upload(7, reason="backfill"),
            key="7",
        )
        records = await collect_classified(kafka, count=4)

    events = values(records)
    assert len(events) == 4
    assert len({tuple((p["name"], p["confidence"]) for p in e["predictions"]) for e in events}) == 1
    assert fake_replicate.stats.creations_per_url == {"https://cdn.test/7/f1.mp3": 1}
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT status FROM genre_classifications"))).one()
    assert row.status == "succeeded"


async def test_force_reclassifies_a_classified_file(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
) -> None:
    classified = kafka.topic(topics.GENRES_CLASSIFIED)
    async with classifying(kafka, replicate_settings) as client:
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), upload(9), key="9")
        # The two topics are read concurrently: the request must come after the upload's result.
        await read_topic(kafka.bootstrap_servers, classified, count=1)
        await send_json(
            client,
            kafka.topic(topics.CLASSIFICATION_REQUESTED),
            upload(9, reason="reclassify", force=True),
            key="9",
        )
        await read_topic(kafka.bootstrap_servers, classified, count=2)

    assert fake_replicate.stats.creations_per_url == {"https://cdn.test/9/f1.mp3": 2}


async def test_a_new_file_of_the_same_track_is_classified_again(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
) -> None:
    async with classifying(kafka, replicate_settings) as client:
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), upload(4, "a"), key="4")
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), upload(4, "b"), key="4")
        records = await collect_classified(kafka, count=2)

    assert [e["file_id"] for e in values(records)] == ["a", "b"]
    assert sum(fake_replicate.stats.creations_per_url.values()) == 2


async def test_permanent_failures_publish_classification_failed_once(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
) -> None:
    bad = {"track_id": 5, "file_id": "x", "audio_url": "https://cdn.test/5.mp3?fake=fail"}
    async with classifying(kafka, replicate_settings) as client:
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), bad, key="5")
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), bad, key="5")
        records = await read_topic(
            kafka.bootstrap_servers, kafka.topic(topics.GENRES_FAILED), count=2
        )

    failures = values(records)
    assert len(failures) == 2
    assert {f["error"]["kind"] for f in failures} == {"prediction_failed"}
    assert all(f["retryable"] is False for f in failures)
    assert fake_replicate.stats.creations == 1


async def test_a_poison_record_is_dead_lettered_and_the_next_one_is_classified(
    kafka: KafkaTestBed,
    make_settings: Callable[..., Settings],
    fake_replicate: FakeReplicate,
) -> None:
    settings = make_settings(fake_replicate, kafka_topic_partitions=1)
    uploaded = kafka.topic(topics.TRACK_UPLOADED)
    async with classifying(kafka, settings) as client:
        await send_json(client, uploaded, b"{not json", key="1")
        await send_json(client, uploaded, {"track_id": -3, "file_id": "f"}, key="2")
        await send_json(client, uploaded, upload(3), key="3")
        dead = await read_topic(kafka.bootstrap_servers, f"{uploaded}.dlq", count=2)
        classified = await collect_classified(kafka, count=1)

    # Records of different tracks run side by side: their dead letters land in either order,
    # each with the coordinates of its own record.
    dead.sort(key=lambda record: int(header(record, "x-original-offset") or -1))
    assert [record.value for record in dead] == [
        b"{not json",
        b'{"track_id": -3, "file_id": "f"}',
    ]
    assert [record.key for record in dead] == [b"1", b"2"]
    for record in dead:
        assert header(record, "x-original-topic") == uploaded
        assert header(record, "x-original-partition") == "0"
        assert "\n" not in (header(record, "x-dlq-reason") or "\n")
    assert [header(r, "x-original-offset") for r in dead] == ["0", "1"]
    assert "TrackUploaded" in (header(dead[0], "x-dlq-reason") or "")
    assert "track_id" in (header(dead[1], "x-dlq-reason") or "")
    assert [e["track_id"] for e in values(classified)] == [3]


async def test_concurrency_goes_beyond_the_partition_count(
    kafka: KafkaTestBed,
    make_settings: Callable[..., Settings],
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(latency_ms=500)
    settings = make_settings(
        fake_replicate,
        kafka_topic_partitions=1,
        classifier_concurrency=16,
        # The account's cap (600 a minute: 5 in flight at 500 ms) is not what is tested here.
        replicate_max_predictions_per_minute=100_000,
    )
    async with classifying(kafka, settings) as client:
        for track_id in range(1, 33):
            await send_json(
                client, kafka.topic(topics.TRACK_UPLOADED), upload(track_id), key=str(track_id)
            )
        await collect_classified(kafka, count=32)
        await asyncio.sleep(0)

    assert fake_replicate.stats.max_running >= 8
    assert fake_replicate.stats.max_running <= 16
