"""``bench pipeline``: uploads in, predictions out, through real processes.

Starts a broker (embedded Tansu unless KAFKA_BOOTSTRAP_SERVERS), a scratch database, the
fake Replicate in its own process at a given latency, and ``genres run classifier`` and
``genres run projector`` as processes; publishes N uploads at once and measures, per track,
the time from its upload to its ``GenresClassified`` and to its projection.

    uv run python -m bench pipeline --events 2000 --latency-ms 250 --concurrency 64

The last line is JSON: events, replicate_latency_ms, concurrency, partitions,
throughput_per_s, ideal_per_s (concurrency / latency), ratio, end_to_end_p50_ms,
end_to_end_p99_ms, lost, duplicate_classifications, and first_publish_to_last_projection_s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text

from bench.cpu import cpu_seconds, cpu_snapshot, cpu_used_since
from bench.infra import (
    fake_replicate_process,
    genres_process,
    kafka_broker,
    percentile,
    postgres_server,
    scratch_database,
)
from genres.config import load_settings
from genres.database.engine import create_engine
from genres.kafka.broker import ensure_topics
from genres_contracts import topics

FAKE_TOKEN = "r8_fake_token"


def _upload(track_id: int) -> bytes:
    return json.dumps(
        {
            "track_id": track_id,
            "file_id": f"f{track_id}",
            "audio_url": f"https://cdn.bench/{track_id}.mp3",
        }
    ).encode()


async def _outcome_consumer(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=50)
    await consumer.start()
    partitions = []
    for topic in (topics.GENRES_CLASSIFIED, topics.GENRES_FAILED):
        await consumer._client.force_metadata_update()
        ids = consumer.partitions_for_topic(topic) or set()
        partitions += [TopicPartition(topic, p) for p in ids]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    return consumer


async def _publish(producer: AIOKafkaProducer, ids: range) -> dict[int, float]:
    sent: dict[int, float] = {}
    futures = []
    for track_id in ids:
        sent[track_id] = time.monotonic()
        futures.append(
            await producer.send(
                topics.TRACK_UPLOADED, value=_upload(track_id), key=str(track_id).encode()
            )
        )
    await asyncio.gather(*futures)
    return sent


async def _collect(
    consumer: AIOKafkaConsumer, wanted: set[int], timeout: float
) -> tuple[dict[int, float], int]:
    arrived: dict[int, float] = {}
    failed = 0
    deadline = time.monotonic() + timeout
    while wanted - arrived.keys() and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=100)
        now = time.monotonic()
        for tp, records in batches.items():
            for record in records:
                track_id = json.loads(record.value)["track_id"]
                if track_id in wanted and track_id not in arrived:
                    arrived[track_id] = now
                    failed += tp.topic == topics.GENRES_FAILED
    return arrived, failed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    knobs = ["--latency-ms", str(args.latency_ms), "--start-delay-ms", "0"]
    workdir = Path(tempfile.mkdtemp(prefix="genres-bench-"))
    print(f"logs in {workdir}", flush=True)
    async with (
        kafka_broker() as bootstrap,
        postgres_server() as (server_url, _),
        scratch_database(server_url) as database_url,
        fake_replicate_process(*knobs) as replicate_url,
    ):
        total = args.warmup + args.events
        engine = create_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tracks (id, file_id, audio_url) "
                    "SELECT i, 'f' || i, 'https://cdn.bench/' || i || '.mp3' "
                    "FROM generate_series(1, :n) AS i"
                ),
                {"n": total},
            )
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "CLASSIFIER_BACKEND": "replicate",
            "REPLICATE_API_TOKEN": FAKE_TOKEN,
            "REPLICATE_BASE_URL": replicate_url,
            "REPLICATE_MAX_PREDICTIONS_PER_MINUTE": str(args.max_per_minute),
            "CLASSIFIER_CONCURRENCY": str(args.concurrency // args.processes),
            **(
                {"CLASSIFIER_RECORDS_IN_FLIGHT": str(args.records_in_flight // args.processes)}
                if args.records_in_flight
                else {}
            ),
            "KAFKA_TOPIC_PARTITIONS": str(args.partitions),
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "LOG_LEVEL": "WARNING",
            "KAFKA_COMPRESSION": args.compression,
        }
        await ensure_topics(load_settings(**{k.lower(): v for k, v in env.items()}))
        consumer = await _outcome_consumer(bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        log = workdir / "service.log"
        try:
            async with contextlib.AsyncExitStack() as stack:
                classifiers = [
                    await stack.enter_async_context(
                        genres_process("run", "classifier", env=env, log=log)
                    )
                    for _ in range(args.processes)
                ]
                await stack.enter_async_context(
                    genres_process("run", "projector", env=env, log=log)
                )
                # Warm up: group joins, connections, JIT-free but cache-warm paths.
                warm = range(args.events + 1, total + 1)
                await _publish(producer, warm)
                arrived, _ = await _collect(consumer, set(warm), timeout=120)
                if len(arrived) < len(warm):
                    raise RuntimeError(f"warm-up incomplete; see {log}")

                ids = range(1, args.events + 1)
                cpu_before = sum(cpu_seconds(c.pid) for c in classifiers)
                machine_before = cpu_snapshot()
                stats_url = replicate_url.removesuffix("/v1") + "/_fake/stats"
                sent = await _publish(producer, ids)
                first = min(sent.values())
                arrived, failed = await _collect(consumer, set(ids), timeout=args.timeout)
                cpu_used = sum(cpu_seconds(c.pid) for c in classifiers) - cpu_before
                burst = cpu_used_since(machine_before)
                projected_at = await _wait_projected(engine, total, args.timeout)
                async with httpx.AsyncClient() as http:
                    stats = (await http.get(stats_url)).json()
        finally:
            await producer.stop()
            await consumer.stop()
            await engine.dispose()

    latencies = [(arrived[t] - sent[t]) * 1000 for t in arrived]
    span = max(arrived.values()) - first if arrived else float("inf")
    throughput = len(arrived) / span if arrived else 0.0
    ideal = args.concurrency / (args.latency_ms / 1000)
    paid = stats["creations_per_url"]
    return {
        "events": args.events,
        "replicate_latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "partitions": args.partitions,
        "classifier_processes": args.processes,
        # Records around the classifications (claimed, recording, publishing); the default
        # is twice the concurrency.
        "records_in_flight": args.records_in_flight or 2 * args.concurrency,
        "throughput_per_s": round(throughput, 1),
        "ideal_per_s": round(ideal, 1),
        "ratio": round(throughput / ideal, 3),
        "end_to_end_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "end_to_end_p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "lost": args.events - len(arrived),
        "failed": failed,
        "duplicate_classifications": sum(paid.values()) - len(paid),
        # Contention on a shared machine stretches wall time; CPU per event does not.
        "classifier_cpu_ms_per_event": round(cpu_used * 1000 / max(1, len(arrived)), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "kafka_compression": args.compression,
        # Everything shares two cores: CPU seconds per process kind during the burst.
        "burst_cpu_s": burst,
        "first_publish_to_last_projection_s": (
            round(projected_at - first, 2) if projected_at is not None else None
        ),
    }


async def _wait_projected(engine: Any, total: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    query = text("SELECT count(*) FROM tracks WHERE extra ? 'genre_predictions'")
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar_one() >= total:
                return time.monotonic()
        await asyncio.sleep(0.02)
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, default=250)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument(
        "--processes", type=int, default=1, help="classifier processes sharing the concurrency"
    )
    p.add_argument(
        "--records-in-flight",
        type=int,
        default=0,
        help="CLASSIFIER_RECORDS_IN_FLIGHT (default: the service's, twice the concurrency)",
    )
    p.add_argument(
        "--compression",
        default="gzip",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        help="KAFKA_COMPRESSION of the service's processes",
    )
    p.add_argument("--warmup", type=int, default=64)
    p.add_argument("--max-per-minute", type=int, default=100_000)
    p.add_argument("--timeout", type=float, default=300)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = asyncio.run(run(args))
    print(
        f"{result['events']} uploads at {args.latency_ms:g} ms, concurrency {args.concurrency}, "
        f"{args.partitions} partitions: {result['throughput_per_s']}/s "
        f"(ideal {result['ideal_per_s']}/s, ratio {result['ratio']}); "
        f"end to end p50 {result['end_to_end_p50_ms']} ms, p99 {result['end_to_end_p99_ms']} ms; "
        f"lost {result['lost']}, paid twice {result['duplicate_classifications']}"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
