"""Latency of a cached recommend request against a raw Kafka round trip on the same broker.

    uv run python -m bench.recommend [--requests 200] [--concurrency 20]

Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else an embedded Tansu; ``DATABASE_URL`` when set,
else the local PostgreSQL on 127.0.0.1:5432, else an embedded one (a fresh database is
created and dropped). Runs the responder in-process, then times, through the same
:class:`~genres_contracts.kafka.GenresClient` (as the service configures it):

* ``recommend``: ``RecommendedTagsRequest`` for tracks with cached predictions;
* ``raw``: a bare echo: the request goes to a topic, a group-less aiokafka consumer (same
  fetch settings as the responder) publishes it straight back to the reply topic.

Each is run sequentially, then ``--concurrency``-way concurrently. The last line is JSON.

Client and responder share this process's event loop, so the concurrent p50 is about
``concurrency`` x the process CPU per request, and it moves with whatever else runs on the
machine's cores. The CPU per recommend request (``cpu_ms_per_request``,
``concurrent_cpu_ms_per_request``) is printed beside it: compare that between trees when the
machine is shared (issue 13: a 20-way "regression" that was the load, not the code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.bus import serving

from bench.infra import bench_settings, servers
from bench.percentiles import percentile
from genres.config import Settings
from genres.database.engine import create_engine
from genres.database.schema import tags, track_tags, tracks
from genres.kafka.broker import client_options, ensure_topics
from genres.kafka.client import genres_client
from genres.kafka.entry import create_broker
from genres.kafka.producer import Publisher
from genres.responder.assembly import register_responder
from genres.responder.entry import RESPONDER_FETCH_MAX_WAIT_MS
from genres.responder.tracks import create_read_engine
from genres_contracts import topics

ECHO_TOPIC = "bench.echo"
PREDICTIONS = [
    {"name": f"style{n} genre", "confidence": round(0.5 - n * 0.04, 4)} for n in range(10)
]


async def seed(engine: AsyncEngine, count: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(tags), [{"name": "style1 genre"}, {"name": "Rock"}])
        await connection.execute(
            insert(tracks),
            [
                {
                    "id": n,
                    "file_id": f"f{n}",
                    "audio_url": f"https://cdn.example/audio/f{n}.mp3",
                    "extra": {
                        "genre_predictions": PREDICTIONS,
                        "genre_predictions_file_id": f"f{n}",
                    },
                }
                for n in range(1, count + 1)
            ],
        )
        await connection.execute(
            insert(track_tags),
            [{"track_id": n, "tag_id": t} for n in range(1, count + 1) for t in (1, 2)],
        )


@contextlib.asynccontextmanager
async def echo_server(settings: Settings) -> AsyncIterator[None]:
    """The raw round trip's far end: consume, publish the value back to ``reply_to``."""
    topic = settings.topic(ECHO_TOPIC)
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(settings),
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=RESPONDER_FETCH_MAX_WAIT_MS,
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    while not consumer.assignment():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for partition in consumer.assignment():
        await consumer.position(partition)

    async def reply(record: Any) -> None:
        headers = dict(record.headers)
        await producer.send_and_wait(
            headers[topics.REPLY_TO_HEADER].decode(),
            record.value,
            key=record.key,
            headers=[(topics.CORRELATION_ID_HEADER, headers[topics.CORRELATION_ID_HEADER])],
        )

    async with serving(consumer, producer, reply):
        yield


# -- measuring ---------------------------------------------------------------------------------


async def timed(
    call: Callable[[int], Awaitable[object]], count: int, concurrency: int
) -> list[float]:
    """Latencies in ms of ``count`` calls, ``concurrency`` at a time."""
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            started = time.perf_counter()
            await call(n)
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def summary(name: str, samples: list[float]) -> dict[str, float]:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(
        f"  {name:<28} n={len(samples):<4} p50={p50:7.2f} ms  p99={p99:7.2f} ms  "
        f"mean={statistics.fmean(samples):7.2f} ms"
    )
    return {"p50": p50, "p99": p99}


async def run(count: int, concurrency: int) -> dict[str, Any]:
    async with servers() as (bootstrap, url):
        settings = bench_settings(bootstrap, url, classifier_backend="local")
        engine = create_engine(url, pool_size=2)
        read_engine = create_read_engine(url, pool_size=concurrency)
        statements = 0

        def count_statement(*_: Any) -> None:
            nonlocal statements
            statements += 1

        try:
            await seed(engine, count)
            await ensure_topics(settings)
            publisher = Publisher.create(settings)
            broker = create_broker(settings)
            runtime = register_responder(
                broker,
                settings=settings,
                engine=engine,
                publisher=publisher,
                read_engine=read_engine,
            )
            await publisher.start()
            await runtime.start()
            await broker.start()
            try:
                async with echo_server(settings), genres_client(settings) as client:

                    async def recommend(n: int) -> object:
                        reply = await client.recommended_tags(n % count + 1, limit=5)
                        assert reply.tags, reply
                        assert not reply.pending, reply
                        return reply

                    async def raw(n: int) -> object:
                        request = {"track_id": n % count + 1, "limit": 5}
                        return await client.request(
                            ECHO_TOPIC, json.dumps(request).encode(), timeout=10
                        )

                    # warm-up: group join, connection pools, statement caches
                    await timed(recommend, 30, 1)
                    await timed(recommend, 5 * concurrency, concurrency)
                    await timed(raw, 30, 1)
                    await timed(raw, 5 * concurrency, concurrency)
                    event.listen(read_engine.sync_engine, "before_cursor_execute", count_statement)
                    cpu = time.process_time()
                    seq = await timed(recommend, count, 1)
                    seq_cpu = (time.process_time() - cpu) * 1000 / count
                    event.remove(read_engine.sync_engine, "before_cursor_execute", count_statement)
                    per_request = statements / count
                    raw_seq = await timed(raw, count, 1)
                    cpu = time.process_time()
                    conc = await timed(recommend, count, concurrency)
                    conc_cpu = (time.process_time() - cpu) * 1000 / count
                    raw_conc = await timed(raw, count, concurrency)
            finally:
                await broker.stop()
                await runtime.stop()
                await publisher.stop()
        finally:
            await engine.dispose()
            await read_engine.dispose()

    print(f"recommend vs raw round trip on {bootstrap} ({count} requests each)")
    s = summary("recommend, sequential", seq)
    r = summary("raw round trip, sequential", raw_seq)
    c = summary(f"recommend, {concurrency}-way", conc)
    rc = summary(f"raw round trip, {concurrency}-way", raw_conc)
    print(f"  SQL statements per cached answer: {per_request:.2f}")
    print(
        f"  process CPU per recommend: sequential {seq_cpu:.3f} ms, "
        f"{concurrency}-way {conc_cpu:.3f} ms (client and responder)"
    )
    return {
        "p50_ms": round(s["p50"], 3),
        "p99_ms": round(s["p99"], 3),
        "raw_p50_ms": round(r["p50"], 3),
        "raw_p99_ms": round(r["p99"], 3),
        "ratio_p50": round(s["p50"] / r["p50"], 3),
        "concurrent_p50_ms": round(c["p50"], 3),
        "concurrent_p99_ms": round(c["p99"], 3),
        "raw_concurrent_p50_ms": round(rc["p50"], 3),
        "raw_concurrent_p99_ms": round(rc["p99"], 3),
        "concurrent_ratio_p50": round(c["p50"] / rc["p50"], 3),
        "sql_statements_per_request": round(per_request, 3),
        "cpu_ms_per_request": round(seq_cpu, 3),
        "concurrent_cpu_ms_per_request": round(conc_cpu, 3),
        "requests": count,
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.requests, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
