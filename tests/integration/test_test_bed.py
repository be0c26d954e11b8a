"""The test bed itself: the broker and database fixtures work as the other suites expect."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.database.migrate import VERSION_TABLE, current_revision, head_revision, upgrade
from genres.database.schema import ALL_TABLES
from tests.support.broker import KafkaTestBed
from tests.support.bus import create_topics, fast_consumer_options
from tests.support.tansu import TansuUnderTest


async def _produce(bootstrap: str, topic: str, value: bytes, key: bytes = b"1") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_topics_are_created_idempotently(kafka: KafkaTestBed) -> None:
    names = [kafka.topic("a"), kafka.topic("b")]
    assert sorted(await create_topics(kafka.bootstrap_servers, names, partitions=3)) == names
    assert await create_topics(kafka.bootstrap_servers, names, partitions=3) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {name: 3 for name in names}


def _reader(kafka: KafkaTestBed, topic: str) -> AIOKafkaConsumer:
    """A member of the ``readers`` group, committing by hand, from the earliest record."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=kafka.group("readers"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **fast_consumer_options(),
    )


async def test_produce_and_consume_through_a_group_with_a_committed_offset(
    kafka: KafkaTestBed,
) -> None:
    (topic,) = await kafka.create_topics("records", partitions=1)
    await _produce(kafka.bootstrap_servers, topic, b"hello")

    started = time.monotonic()
    consumer = _reader(kafka, topic)
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
        assert record.value == b"hello"
        assert record.key == b"1"
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, record.partition))
        assert committed == record.offset + 1
    finally:
        await consumer.stop()
    first_record_seconds = time.monotonic() - started

    # a new member of the same group resumes after the committed offset
    await _produce(kafka.bootstrap_servers, topic, b"second")
    consumer = _reader(kafka, topic)
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
        assert record.value == b"second"
    finally:
        await consumer.stop()
    # a fresh group joins in about a second with the fast options (5 s with the defaults)
    assert first_record_seconds < 10


def test_the_topic_prefix_is_a_t_to_a_dot_put_before_each_name(
    topic_prefix: str, kafka: KafkaTestBed
) -> None:
    assert kafka.prefix == topic_prefix
    assert topic_prefix.startswith("t")
    assert topic_prefix.endswith(".")
    assert kafka.topic("track.uploaded") == f"{topic_prefix}track.uploaded"


async def test_a_frozen_broker_answers_nothing_until_thawed(
    embedded_broker: TansuUnderTest,
) -> None:
    bootstrap = embedded_broker.bootstrap_servers
    (topic,) = await create_topics(bootstrap, ["frozen"], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before")
        embedded_broker.freeze()
        assert embedded_broker.frozen
        pending = asyncio.ensure_future(producer.send_and_wait(topic, b"during"))
        await asyncio.sleep(0.5)
        assert not pending.done(), "a frozen broker must not answer"
        embedded_broker.thaw()
        metadata = await asyncio.wait_for(pending, 20)
        assert metadata.offset == 1
    finally:
        embedded_broker.thaw()
        await producer.stop()


def test_broker_stop_leaves_no_process() -> None:
    broker = TansuUnderTest().start()
    pid = broker.pid
    assert pid is not None
    broker.freeze()
    broker.close()  # a frozen broker must still stop
    assert broker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_broker_restart_keeps_the_port_and_comes_back_empty(
    embedded_broker: TansuUnderTest,
) -> None:
    bootstrap = embedded_broker.bootstrap_servers
    await create_topics(bootstrap, ["before-restart"], partitions=1)
    old_pid = embedded_broker.pid
    await embedded_broker.arestart()
    assert embedded_broker.bootstrap_servers == bootstrap
    assert embedded_broker.pid not in (None, old_pid)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        assert "before-restart" not in await admin.list_topics()  # memory storage
    finally:
        await admin.close()


async def test_database_is_migrated_and_empty(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        assert tables == {*ALL_TABLES, VERSION_TABLE}
        for table in ALL_TABLES:
            assert await connection.scalar(text(f"SELECT count(*) FROM {table}")) == 0
        version = await connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    assert version == head_revision()


async def test_schema_matches_the_metadata(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from genres.database.schema import metadata

    def diff(sync_connection: object) -> list[object]:
        context = MigrationContext.configure(
            sync_connection,  # type: ignore[arg-type]
            opts={"compare_type": True, "compare_server_default": True},
        )
        return [
            d
            for d in compare_metadata(context, metadata)
            if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)  # type: ignore[index]
        ]

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrade_is_idempotent_and_safe_concurrently(empty_database_url: str) -> None:
    assert await current_revision(empty_database_url) is None
    assert await upgrade(empty_database_url) == head_revision()
    assert await upgrade(empty_database_url) == head_revision()
    results = await asyncio.gather(*(upgrade(empty_database_url) for _ in range(3)))
    assert results == [head_revision()] * 3


async def test_upgrade_keeps_existing_platform_tables(empty_database_url: str) -> None:
    from genres.database.engine import create_engine

    engine = create_engine(empty_database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE TABLE tracks (id BIGINT PRIMARY KEY, file_id TEXT, audio_url TEXT,"
                    " extra JSONB NOT NULL DEFAULT '{}', title TEXT)"
                )
            )
            await connection.execute(text("INSERT INTO tracks (id, title) VALUES (1, 'kept')"))
        await upgrade(empty_database_url)
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT title FROM tracks WHERE id = 1")) == "kept"
            tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            assert set(ALL_TABLES) <= tables
    finally:
        await engine.dispose()


_seen_databases: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
async def test_each_test_gets_its_own_database(round_: int, engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        name = await connection.scalar(text("SELECT current_database()"))
        assert await connection.scalar(text("SELECT count(*) FROM tracks")) == 0
        await connection.execute(text("INSERT INTO tracks (id) VALUES (1)"))
    assert name not in _seen_databases
    _seen_databases.append(name)
