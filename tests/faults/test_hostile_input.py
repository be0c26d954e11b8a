"""Hostile records on the classifier's topic: each goes to the DLQ with its reason, the
service stays up, and the partition keeps flowing."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from tests.support.broker import KafkaTestBed
from tests.support.bus import header, read_topic, values
from tests.support.fake_replicate import FakeReplicate

from genres.bootstrap import Role, running
from genres.config import Settings
from genres_contracts import topics

GOOD = {"file_id": "f", "audio_url": "https://cdn.test/ok.mp3"}

# (value, headers, what the reason must mention)
HOSTILE: list[tuple[bytes | None, list[tuple[str, bytes]], str]] = [
    (b"{not json", [], "TrackUploaded"),
    (b"", [], "TrackUploaded"),
    (None, [], "tombstone"),
    (b"[1, 2, 3]", [], "TrackUploaded"),
    (json.dumps({**GOOD, "track_id": "668"}).encode(), [], "track_id"),
    (json.dumps({**GOOD, "track_id": -4}).encode(), [], "track_id"),
    (json.dumps({**GOOD, "track_id": 2**70}).encode(), [], "track_id"),
    (json.dumps({**GOOD, "track_id": 1.5}).encode(), [], "track_id"),
    (
        json.dumps({"track_id": 3, "file_id": "f", "audio_url": "file:///etc/passwd"}).encode(),
        [],
        "audio_url",
    ),
    (
        json.dumps({"track_id": 3, "file_id": "", "audio_url": GOOD["audio_url"]}).encode(),
        [],
        "file_id",
    ),
    (b'{"track_id": 3, "file_id": "f", "audio_url": "https://x.test/\xff"}', [], "TrackUploaded"),
    (b"x" * (10 * 1024 * 1024), [("content-type", b"\xff\xfe")], "bytes"),
]


async def test_hostile_records_are_dead_lettered_and_the_partition_keeps_flowing(
    kafka: KafkaTestBed,
    make_settings: Callable[..., Settings],
    fake_replicate: FakeReplicate,
) -> None:
    settings = make_settings(fake_replicate, kafka_topic_partitions=1)
    topic = kafka.topic(topics.TRACK_UPLOADED)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, max_request_size=16 * 1024 * 1024
    )
    async with running(settings, frozenset({Role.CLASSIFIER})):
        await producer.start()
        try:
            for index, (value, headers, _) in enumerate(HOSTILE):
                await producer.send_and_wait(
                    topic, value=value, key=str(index).encode(), headers=headers
                )
            # Valid records around the poison: unknown fields, odd header bytes, no key.
            await producer.send_and_wait(
                topic,
                json.dumps({**GOOD, "track_id": 100, "future_field": {"a": [1]}}).encode(),
                key=b"100",
                headers=[("x-trace", b"\xc3\x28"), ("", b"")],
            )
            await producer.send_and_wait(
                topic, json.dumps({**GOOD, "track_id": 101, "file_id": "g"}).encode()
            )
        finally:
            await producer.stop()
        dead = await read_topic(kafka.bootstrap_servers, f"{topic}.dlq", count=len(HOSTILE))
        classified = await read_topic(
            kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED), count=2
        )

    # Records with different keys are handled concurrently: order by original offset.
    dead.sort(key=lambda record: int(header(record, "x-original-offset") or -1))
    assert [header(r, "x-original-offset") for r in dead] == [str(i) for i in range(len(HOSTILE))]
    for record, (value, _, mention) in zip(dead, HOSTILE, strict=True):
        assert record.value == value, "the original value must be kept unchanged"
        reason = header(record, "x-dlq-reason") or ""
        assert mention in reason, reason
        assert "\n" not in reason
        assert len(reason) <= 1000
        assert header(record, "x-original-topic") == topic
    assert sorted(e["track_id"] for e in values(classified)) == [100, 101]
