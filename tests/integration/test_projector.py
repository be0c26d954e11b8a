"""The projector against a real PostgreSQL, and through a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import Role, running
from genres.config import Settings
from genres.kafka.producer import Publisher, track_key
from genres.projector.assembly import assemble as assemble_projector
from genres.projector.rule import ProjectionBatch, project
from genres.projector.store import SqlProjectionStore
from genres_contracts import topics
from tests.support.bus import read_topic
from tests.support.database import insert_track
from tests.support.messages import SEVEN_FOR_FIVE_TAGS, classified
from tests.support.waiting import eventually

PROJECTOR = frozenset({Role.PROJECTOR})


async def add_track(
    engine: AsyncEngine, track_id: int, file_id: str | None, extra: dict[str, Any] | None = None
) -> None:
    await insert_track(engine, track_id, file_id, extra=extra)


async def add_tags(engine: AsyncEngine, track_id: int, names: list[str]) -> None:
    async with engine.begin() as connection:
        for name in names:
            tag_id = await connection.scalar(
                text(
                    "INSERT INTO tags (name) VALUES (:name) "
                    "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id"
                ),
                {"name": name},
            )
            await connection.execute(
                text("INSERT INTO track_tags (track_id, tag_id) VALUES (:t, :g)"),
                {"t": track_id, "g": tag_id},
            )


async def extra_of(engine: AsyncEngine, track_id: int) -> dict[str, Any] | None:
    async with engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT extra FROM tracks WHERE id = :id"), {"id": track_id}
        )
    return value  # type: ignore[no-any-return]


async def tags_of(engine: AsyncEngine, track_id: int) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT t.name FROM track_tags tt JOIN tags t ON t.id = tt.tag_id "
                "WHERE tt.track_id = :id ORDER BY t.name"
            ),
            {"id": track_id},
        )
        return [row.name for row in rows]


async def snapshot(engine: AsyncEngine) -> tuple[list[Any], ...]:
    async with engine.connect() as connection:
        tables = []
        for query in (
            "SELECT id, file_id, extra FROM tracks ORDER BY id",
            "SELECT id, name FROM tags ORDER BY id",
            "SELECT track_id, tag_id FROM track_tags ORDER BY track_id, tag_id",
            "SELECT track_id, file_id FROM classification_requests ORDER BY track_id, file_id",
        ):
            tables.append([tuple(row) for row in await connection.execute(text(query))])
        return tuple(tables)


PREDICTIONS = [("ambient electronic", 0.1999), ("downtempo electronic", 0.12), ("house", 0.01)]


# -- the store and the role, on a real database -----------------------------------------------


async def test_predictions_land_in_extra_and_other_keys_are_untouched(engine: AsyncEngine) -> None:
    await add_track(engine, 668, "b2c1e0", {"bpm": 120, "genre_predictions_note": "x"})

    report = await project(
        [classified(668, "b2c1e0", PREDICTIONS)], store=SqlProjectionStore(engine)
    )

    assert (report.written, report.stale, report.missing) == (1, 0, 0)
    assert await extra_of(engine, 668) == {
        "bpm": 120,
        "genre_predictions_note": "x",
        "genre_predictions": [{"name": n, "confidence": c} for n, c in PREDICTIONS],
        "genre_predictions_file_id": "b2c1e0",
    }


async def test_a_stale_file_id_is_dropped_and_counted(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "new", {"keep": True})
    await add_track(engine, 2, "current")

    report = await project(
        [classified(1, "old", PREDICTIONS), classified(2, "current", PREDICTIONS)],
        store=SqlProjectionStore(engine),
    )

    assert (report.written, report.stale, report.missing) == (1, 1, 0)
    assert await extra_of(engine, 1) == {"keep": True}
    assert (await extra_of(engine, 2) or {})["genre_predictions_file_id"] == "current"


async def test_the_last_event_per_track_in_a_batch_wins(engine: AsyncEngine) -> None:
    await add_track(engine, 5, "f")
    store = SqlProjectionStore(engine)

    report = await project(
        [
            classified(5, "f", [("rock", 0.9)]),
            classified(5, "f", [("jazz", 0.8)]),
            classified(5, "old", [("pop", 0.7)]),
        ],
        store=store,
    )

    assert (report.written, report.superseded, report.stale) == (1, 1, 1)
    assert (await extra_of(engine, 5) or {})["genre_predictions"] == [
        {"name": "jazz", "confidence": 0.8}
    ]


async def test_an_unknown_track_is_skipped(engine: AsyncEngine) -> None:
    await add_track(engine, 7, "f")

    report = await project(
        [classified(999, "f", PREDICTIONS), classified(7, "f", PREDICTIONS)],
        store=SqlProjectionStore(engine),
    )

    assert (report.written, report.missing) == (1, 1)


async def test_replaying_the_same_events_leaves_identical_rows(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "a", {"keep": 1})
    await add_track(engine, 2, "b")
    await add_tags(engine, 2, ["Rock"])
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO classification_requests (track_id, file_id) VALUES (1, 'a'), (2, 'x')"
            )
        )
    events = [
        classified(1, "a", PREDICTIONS, auto_tag=True),
        classified(2, "b", [("rock", 0.5), ("pop", 0.4), ("punk", 0.3)], auto_tag=True),
        classified(2, "stale", PREDICTIONS),
        classified(3, "missing", PREDICTIONS),
    ]
    store = SqlProjectionStore(engine)

    await project(events, store=store)
    first = await snapshot(engine)
    await project(events, store=store)
    await project(events[::-1], store=store)

    assert await snapshot(engine) == first
    # the written track's on-demand marker is gone, the other file's marker stays
    assert first[3] == [(2, "x")]


async def test_auto_tag_adds_at_most_five_skipping_existing_case_insensitively(
    engine: AsyncEngine,
) -> None:
    await add_track(engine, 1, "f")
    await add_tags(engine, 1, ["Rock"])
    report = await project(
        [classified(1, "f", SEVEN_FOR_FIVE_TAGS, auto_tag=True)], store=SqlProjectionStore(engine)
    )

    # the best five are rock..soul; the track has "Rock" already, so four are new
    assert await tags_of(engine, 1) == ["Rock", "jazz", "pop", "punk", "soul"]
    assert report.tags_added == 4


async def test_auto_tag_never_takes_a_track_past_ten_tags(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "f")
    await add_tags(engine, 1, [f"tag{i}" for i in range(8)])
    await add_track(engine, 2, "f")
    await add_tags(engine, 2, [f"tag{i}" for i in range(10)])
    predictions = [("rock", 0.9), ("pop", 0.8), ("punk", 0.7), ("jazz", 0.6)]

    await project(
        [
            classified(1, "f", predictions, auto_tag=True),
            classified(2, "f", predictions, auto_tag=True),
        ],
        store=SqlProjectionStore(engine),
    )

    tags = await tags_of(engine, 1)
    assert len(tags) == 10
    assert {"rock", "pop"} <= set(tags)
    assert len(await tags_of(engine, 2)) == 10


async def test_one_name_in_two_cases_in_one_batch_creates_one_tag(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "f")
    await add_track(engine, 2, "f")

    report = await project(
        [
            classified(1, "f", [("rock", 0.9)], auto_tag=True),
            classified(2, "f", [("Rock", 0.9)], auto_tag=True),
        ],
        store=SqlProjectionStore(engine),
    )

    async with engine.connect() as connection:
        names = (await connection.execute(text("SELECT name FROM tags"))).scalars().all()
    assert names == ["Rock"]  # the first spelling in byte order
    assert await tags_of(engine, 1) == await tags_of(engine, 2) == ["Rock"]
    assert report.tags_added == 2


async def test_the_model_of_the_stored_predictions_is_recorded(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "f")
    store = SqlProjectionStore(engine)

    await project([classified(1, "f", PREDICTIONS)], store=store)
    await project([classified(1, "f", PREDICTIONS, model_version="2")], store=store)
    await project([classified(1, "old", PREDICTIONS, model_version="3")], store=store)  # stale

    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT track_id, file_id, model_name, model_version FROM projected_models")
            )
        ).all()
    assert [tuple(r) for r in rows] == [(1, "f", "musicnn/msd", "2")]
    assert set(await extra_of(engine, 1) or {}) == {
        "genre_predictions",
        "genre_predictions_file_id",
    }


async def test_without_auto_tag_no_tags_are_added(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "f")

    await project([classified(1, "f", PREDICTIONS)], store=SqlProjectionStore(engine))

    assert await tags_of(engine, 1) == []


async def test_a_concurrent_write_to_another_key_of_extra_survives(engine: AsyncEngine) -> None:
    await add_track(engine, 1, "f", {"plays": 1})
    store = SqlProjectionStore(engine)

    async with engine.connect() as other:
        await other.execute(
            text("UPDATE tracks SET extra = extra || jsonb_build_object('plays', 2) WHERE id = 1")
        )
        # The other transaction holds the row lock: the projector's update must wait for it.
        projection = asyncio.create_task(project([classified(1, "f", PREDICTIONS)], store=store))
        await asyncio.sleep(0.5)
        assert not projection.done()
        await other.commit()
        report = await asyncio.wait_for(projection, timeout=10)

    assert report.written == 1
    extra = await extra_of(engine, 1) or {}
    assert extra["plays"] == 2
    assert extra["genre_predictions_file_id"] == "f"


async def test_a_file_replaced_while_waiting_for_the_lock_is_not_overwritten(
    engine: AsyncEngine,
) -> None:
    await add_track(engine, 1, "old")
    store = SqlProjectionStore(engine)

    async with engine.connect() as other:
        await other.execute(text("UPDATE tracks SET file_id = 'new' WHERE id = 1"))
        projection = asyncio.create_task(project([classified(1, "old", PREDICTIONS)], store=store))
        await asyncio.sleep(0.3)
        await other.commit()
        report = await asyncio.wait_for(projection, timeout=10)

    assert (report.written, report.stale) == (0, 1)
    assert await extra_of(engine, 1) == {}


# -- through the broker --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def running_projector(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> AsyncIterator[None]:
    """The projector as the composition root runs it, on this test's engine and publisher."""
    async with running(settings, PROJECTOR, engine=engine, publisher=publisher):
        yield


async def _raw_producer(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    return producer


async def _read_all(settings: Settings, topic: str, count: int) -> list[Any]:
    return await read_topic(settings.kafka_bootstrap_servers, topic, count=count)


@pytest.mark.usefixtures("running_projector")
async def test_the_subscriber_projects_dead_letters_poison_and_keeps_flowing(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    await add_track(engine, 11, "f", {"keep": "me"})
    await add_track(engine, 12, "f")
    topic = settings.topic(topics.GENRES_CLASSIFIED)
    key = track_key(11)
    producer = await _raw_producer(settings)
    try:
        # A producer in another language may send no headers at all.
        poison = await producer.send_and_wait(topic, b"{not json", key=key)
        await producer.send_and_wait(
            topic, classified(404, "f", PREDICTIONS).model_dump_json().encode(), key=key
        )
        await producer.send_and_wait(
            topic, classified(11, "f", PREDICTIONS).model_dump_json().encode(), key=key
        )
    finally:
        await producer.stop()
    await publisher.publish(
        topics.GENRES_CLASSIFIED, classified(12, "f", PREDICTIONS), key=track_key(12)
    )

    async def projected() -> bool:
        extras = [await extra_of(engine, track) or {} for track in (11, 12)]
        return all(extra.get("genre_predictions_file_id") == "f" for extra in extras)

    await eventually(projected, what="both tracks projected")
    assert (await extra_of(engine, 11) or {})["keep"] == "me"

    (dead,) = await _read_all(settings, topics.dead_letter_topic(topic), 1)
    headers = dict(dead.headers)
    assert dead.value == b"{not json"
    assert dead.key == key
    assert headers[topics.DLQ_REASON_HEADER].decode().startswith("not a valid GenresClassified")
    assert headers[topics.DLQ_ORIGINAL_TOPIC_HEADER] == topic.encode()
    assert headers[topics.DLQ_ORIGINAL_PARTITION_HEADER] == str(poison.partition).encode()
    assert headers[topics.DLQ_ORIGINAL_OFFSET_HEADER] == str(poison.offset).encode()


class _CommitsSeenBeforeTheTransactionEnds:
    """The SQL store, reading the group's committed offsets at the end of each batch's
    transaction, just before PostgreSQL commits it."""

    def __init__(self, engine: AsyncEngine, committed: Callable[[], Awaitable[int]]) -> None:
        self._store = SqlProjectionStore(engine)
        self._committed = committed
        self.seen: list[int] = []

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[ProjectionBatch]:
        async with self._store.batch() as batch:
            yield batch
            self.seen.append(await self._committed())


async def test_the_subscriber_commits_the_offset_only_after_the_transaction(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    """While the batch's transaction is still open, the broker has no offset of the group:
    acknowledging first would lose the batch to a crash between the two."""
    await add_track(engine, 21, "f")
    await publisher.publish(
        topics.GENRES_CLASSIFIED, classified(21, "f", PREDICTIONS), key=track_key(21)
    )
    topic = settings.topic(topics.GENRES_CLASSIFIED)
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group("genres-projector"),
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        # loads every topic's partitions (``topics()`` returns them but keeps none, and a
        # consumer without subscription knows none on Apache Kafka)
        await reader._client.force_metadata_update()

        async def committed() -> int:
            partitions = reader.partitions_for_topic(topic) or set()
            offsets = [await reader.committed(TopicPartition(topic, p)) for p in partitions]
            return sum(offset or 0 for offset in offsets)

        store = _CommitsSeenBeforeTheTransactionEnds(engine, committed)
        projector = functools.partial(assemble_projector, store=store)
        async with running(
            settings,
            PROJECTOR,
            engine=engine,
            publisher=publisher,
            assemblies={Role.PROJECTOR: projector},
        ):

            async def projected() -> bool:
                return (await extra_of(engine, 21) or {}).get("genre_predictions_file_id") == "f"

            await eventually(projected, what="track projected")
            await eventually(lambda: _equals(committed, 1), what="the offset committed")
    finally:
        await reader.stop()
    assert store.seen == [0], "the offset was committed before the batch's transaction"


async def _equals(read: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await read() == expected


@pytest.mark.usefixtures("running_projector")
async def test_a_record_with_undecodable_headers_is_projected_not_skipped(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    await add_track(engine, 21, "f")
    await add_track(engine, 22, "f")
    topic = settings.topic(topics.GENRES_CLASSIFIED)
    producer = await _raw_producer(settings)
    try:
        await producer.send_and_wait(
            topic,
            classified(21, "f", PREDICTIONS).model_dump_json().encode(),
            key=track_key(21),
            headers=[("x-origin", b"\xff\xfe latin-1 \xe9"), ("content-type", b"\x80")],
        )
        await producer.send_and_wait(
            topic, classified(22, "f", PREDICTIONS).model_dump_json().encode(), key=track_key(22)
        )
    finally:
        await producer.stop()

    async def projected() -> bool:
        extras = [await extra_of(engine, track) or {} for track in (21, 22)]
        return all(extra.get("genre_predictions_file_id") == "f" for extra in extras)

    await eventually(projected, what="both tracks projected")
