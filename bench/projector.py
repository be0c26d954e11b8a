"""Projector throughput: the batched write against one UPDATE per event, on the same data.

    uv run python -m bench.projector [--tracks 20000] [--batch 500] [--broker]

Finds a PostgreSQL like the test fixtures do (``DATABASE_URL``, else 127.0.0.1:5432, else an
embedded server), works in a scratch database it drops afterwards, and prints a summary plus
a final JSON line. ``--broker`` also times the real subscriber: N events published to a
broker (``KAFKA_BOOTSTRAP_SERVERS`` or an embedded Tansu) until all are in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.infra import bench_settings, postgres_server, scratch_database
from genres.database.engine import create_engine
from genres.embedded import EmbeddedBroker
from genres.kafka.broker import ensure_topics
from genres.kafka.entry import create_broker
from genres.kafka.producer import Publisher, encode, track_key
from genres.projector.entry import register_projector
from genres.projector.rule import project
from genres.projector.store import SqlProjectionStore, predictions_json
from genres_contracts import GenresClassified, topics

# The baseline's statement: the service writes a batch in one (``projector/store.py``).
PROJECT_ONE = text(
    """
UPDATE tracks
SET extra = COALESCE(extra, '{}'::jsonb) || jsonb_build_object(
    'genre_predictions', CAST(:predictions AS jsonb),
    'genre_predictions_file_id', CAST(:file_id AS text)
)
WHERE id = :track_id AND file_id = :file_id
RETURNING id
"""
)


class RowAtATimeProjectionStore:
    """The naive write, one UPDATE and one transaction per event: this benchmark's baseline.

    It does no auto-tagging and no marker cleanup; it exists to measure what batching buys.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, events: Sequence[GenresClassified]) -> None:
        for event in events:
            async with self._engine.begin() as connection:
                await connection.execute(
                    PROJECT_ONE,
                    {
                        "track_id": event.track_id,
                        "file_id": event.file_id,
                        "predictions": predictions_json(event.predictions),
                    },
                )


GENRES = [
    "ambient electronic",
    "downtempo electronic",
    "house electronic",
    "techno electronic",
    "indie rock rock",
    "jazz fusion jazz",
    "soul funk / soul",
    "hip hop hip hop",
    "folk folk, world, & country",
    "punk rock",
]


def make_events(count: int) -> list[GenresClassified]:
    now = datetime.now(UTC)
    events = []
    for track_id in range(1, count + 1):
        top = [GENRES[(track_id + k) % len(GENRES)] for k in range(10)]
        events.append(
            GenresClassified.model_validate(
                {
                    "source_event_id": str(uuid.uuid4()),
                    "track_id": track_id,
                    "file_id": f"f{track_id}",
                    "predictions": [
                        {"name": name, "confidence": round(0.5 - 0.04 * rank, 4)}
                        for rank, name in enumerate(top)
                    ],
                    "model": {"name": "mtg/effnet-discogs", "version": "bench"},
                    "classified_at": now,
                }
            )
        )
    return events


async def reset_tracks(engine: AsyncEngine, count: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE tracks CASCADE"))
        await connection.execute(
            text(
                "INSERT INTO tracks (id, file_id, audio_url, extra) "
                "SELECT g, 'f' || g, 'https://cdn.example/' || g || '.mp3', "
                "jsonb_build_object('plays', g) FROM generate_series(1, :n) AS g"
            ),
            {"n": count},
        )
        await connection.execute(text("ANALYZE tracks"))


async def projected(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT count(*) FROM tracks WHERE extra->>'genre_predictions_file_id' = file_id")
        )
    return int(value or 0)


async def timed_writes(
    write: Callable[[Sequence[GenresClassified]], Awaitable[object]],
    events: Sequence[GenresClassified],
    batch: int,
) -> float:
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        await write(events[start : start + batch])
    return time.perf_counter() - started


async def through_broker(
    database_url: str, engine: AsyncEngine, events: Sequence[GenresClassified], batch: int
) -> float:
    """Seconds from the first publish until the subscriber has projected every event."""
    from aiokafka import AIOKafkaProducer

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    tansu: EmbeddedBroker | None = None
    if not bootstrap:
        tansu = await EmbeddedBroker().astart()
        bootstrap = tansu.bootstrap_servers
    try:
        settings = bench_settings(bootstrap, database_url, kafka_fetch_max_wait_ms=10)
        await ensure_topics(settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1024 * 1024
        )
        await producer.start()
        publisher = Publisher(producer, settings)
        broker = create_broker(settings, logger=None)
        register_projector(
            broker, settings=settings, store=SqlProjectionStore(engine), publisher=publisher
        )
        await broker.start()
        try:
            await asyncio.sleep(1.0)  # let the group settle before the clock starts
            topic = settings.topic(topics.GENRES_CLASSIFIED)
            started = time.perf_counter()
            for start in range(0, len(events), 1000):
                futures = [
                    await producer.send(topic, encode(e), key=track_key(e.track_id))
                    for e in events[start : start + 1000]
                ]
                await asyncio.gather(*futures)
            while await projected(engine) < len(events):
                if time.perf_counter() - started > 300:
                    raise TimeoutError("the subscriber did not project every event in 300 s")
                await asyncio.sleep(0.05)
            return time.perf_counter() - started
        finally:
            await broker.stop()
            await producer.stop()
    finally:
        if tansu is not None:
            await tansu.astop()


async def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--broker", action="store_true", help="also time the real subscriber")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("genres").setLevel(logging.WARNING)

    events = make_events(args.tracks)
    results: dict[str, float] = {}
    async with postgres_server() as (server_url, kind), scratch_database(server_url) as url:
        engine = create_engine(url, pool_size=4)
        try:
            print(f"PostgreSQL: {kind}; {args.tracks} tracks; batches of {args.batch}")

            await reset_tracks(engine, args.tracks)
            batched = await timed_writes(
                partial(project, store=SqlProjectionStore(engine)), events, args.batch
            )
            assert await projected(engine) == args.tracks
            results["batched_per_s"] = round(args.tracks / batched, 1)
            print(f"batched:        {batched:7.2f} s  {results['batched_per_s']:>10,.0f} events/s")

            await reset_tracks(engine, args.tracks)
            single = await timed_writes(RowAtATimeProjectionStore(engine).write, events, args.batch)
            assert await projected(engine) == args.tracks
            results["row_at_a_time_per_s"] = round(args.tracks / single, 1)
            rate = results["row_at_a_time_per_s"]
            print(f"row at a time:  {single:7.2f} s  {rate:>10,.0f} events/s")
            results["speedup"] = round(single / batched, 1)
            print(f"speedup:        {results['speedup']}x")

            if args.broker:
                await reset_tracks(engine, args.tracks)
                seconds = await through_broker(url, engine, events, args.batch)
                results["through_broker_per_s"] = round(args.tracks / seconds, 1)
                print(
                    f"through broker: {seconds:7.2f} s  "
                    f"{results['through_broker_per_s']:>10,.0f} events/s (publish to projected)"
                )
        finally:
            await engine.dispose()
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    asyncio.run(main())
