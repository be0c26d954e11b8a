"""``bench pipeline``: uploads in, predictions out, through real processes.

Starts a broker (embedded Tansu unless KAFKA_BOOTSTRAP_SERVERS), a scratch database, the
fake Replicate in its own process at a given latency, and ``genres run classifier`` and
``genres run projector`` as processes; publishes N uploads at once and measures, per track,
the time from its upload to its ``GenresClassified`` and to its projection.

    uv run python -m bench pipeline --events 2000 --latency-ms 250 --concurrency 64

``--backend local`` runs the classifier on the embedded model instead (``CLASSIFIER_BACKEND=
local``, its process pool on every core unless ``--workers``): the uploads point at real
30-second music clips (``bench/clips.py``) served by a fake CDN on loopback HTTP (hence
``AUDIO_ALLOW_PRIVATE_ADDRESSES=true``), and the figure is tracks per second (target 4 on 2
cores); CPU is counted over the classifier and its worker processes.

    uv run python -m bench pipeline --backend local --events 120

One module for both backends (over 300 lines): they share the infrastructure, the
publishing and the collection of outcomes, and differ only in the classifier's variables and
the fake behind it (``_backend``) and in the figures reported.

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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text

from bench.clips import cdn_process, make_clips
from bench.cpu import cpu_seconds, cpu_snapshot, cpu_used_since
from bench.folder import descendants
from bench.infra import fake_replicate_process, genres_process, report, servers
from bench.percentiles import percentile
from genres.config import load_settings
from genres.database.engine import create_engine
from genres.kafka.broker import ensure_topics
from genres_contracts import topics

FAKE_TOKEN = "r8_fake_token"


CDN = "https://cdn.bench"
LOCAL_TARGET_PER_S = 4.0


def _upload(track_id: int, cdn: str, clips: int) -> bytes:
    name = f"clip{track_id % clips:03d}.mp3" if clips else f"{track_id}.mp3"
    return json.dumps(
        {"track_id": track_id, "file_id": f"f{track_id}", "audio_url": f"{cdn}/{name}"}
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


async def _publish(
    producer: AIOKafkaProducer, ids: range, cdn: str = CDN, clips: int = 0
) -> dict[int, float]:
    sent: dict[int, float] = {}
    futures = []
    for track_id in ids:
        sent[track_id] = time.monotonic()
        futures.append(
            await producer.send(
                topics.TRACK_UPLOADED,
                value=_upload(track_id, cdn, clips),
                key=str(track_id).encode(),
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


@contextlib.asynccontextmanager
async def _backend(args: argparse.Namespace) -> AsyncIterator[dict[str, str]]:
    """The classifier's backend variables, with its fake (Replicate, or a CDN of real music)."""
    if args.backend == "local":
        directory = Path(args.clips_dir)
        await asyncio.to_thread(make_clips, directory, args.clips)
        async with cdn_process(directory) as cdn:
            yield {
                "CLASSIFIER_BACKEND": "local",
                "AUDIO_ALLOW_PRIVATE_ADDRESSES": "true",
                "BENCH_CDN": cdn,
                **({"LOCAL_WORKERS": str(args.workers)} if args.workers else {}),
            }
        return
    knobs = ["--latency-ms", str(args.latency_ms), "--start-delay-ms", "0"]
    async with fake_replicate_process(*knobs) as replicate_url:
        yield {
            "CLASSIFIER_BACKEND": "replicate",
            "REPLICATE_API_TOKEN": FAKE_TOKEN,
            "REPLICATE_BASE_URL": replicate_url,
            "REPLICATE_MAX_PREDICTIONS_PER_MINUTE": str(args.max_per_minute),
        }


def _tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and their descendants (the local backend's workers)."""
    total = 0.0
    for pid in {d for p in pids for d in descendants(p)}:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    local = args.backend == "local"
    if args.warmup is None:
        args.warmup = 8 if local else 64
    workdir = Path(tempfile.mkdtemp(prefix="genres-bench-"))
    print(f"logs in {workdir}", flush=True)
    async with (
        servers() as (bootstrap, database_url),
        _backend(args) as backend,
    ):
        cdn = backend.pop("BENCH_CDN", CDN)
        clips = args.clips if local else 0
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
            **backend,
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
                await _publish(producer, warm, cdn, clips)
                arrived, _ = await _collect(consumer, set(warm), timeout=120)
                if len(arrived) < len(warm):
                    raise RuntimeError(f"warm-up incomplete; see {log}")

                ids = range(1, args.events + 1)
                pids = [c.pid for c in classifiers]
                cpu_before = _tree_cpu(pids)
                machine_before = cpu_snapshot()
                load_before = os.getloadavg()[0]
                sent = await _publish(producer, ids, cdn, clips)
                first = min(sent.values())
                arrived, failed = await _collect(consumer, set(ids), timeout=args.timeout)
                cpu_used = _tree_cpu(pids) - cpu_before
                burst = cpu_used_since(machine_before)
                projected_at = await _wait_projected(engine, total, args.timeout)
                stats: dict[str, Any] = {"creations_per_url": {}}
                if not local:
                    stats_url = backend["REPLICATE_BASE_URL"].removesuffix("/v1") + "/_fake/stats"
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
    if local:
        return {
            "backend": "local",
            "events": args.events,
            "clips": args.clips,
            "concurrency": args.concurrency,
            "local_workers": args.workers or os.cpu_count(),
            "partitions": args.partitions,
            "throughput_per_s": round(throughput, 2),
            "target_per_s": LOCAL_TARGET_PER_S,
            "end_to_end_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "end_to_end_p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "lost": args.events - len(arrived),
            "failed": failed,
            "classifier_cpu_s_per_track": round(cpu_used / max(1, len(arrived)), 3),
            "cores": os.cpu_count(),
            "load_average_1m_before": round(load_before, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "burst_cpu_s": burst,
        }
    return {
        "backend": "replicate",
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
    p.add_argument("--backend", choices=["replicate", "local"], default="replicate")
    p.add_argument("--events", type=int, default=None, help="2000 (replicate), 120 (local)")
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
    p.add_argument("--warmup", type=int, default=None, help="64 (replicate), 8 (local)")
    p.add_argument("--clips", type=int, default=60, help="local: distinct clips on the CDN")
    p.add_argument("--clips-dir", default="/tmp/genres-bench-clips", help="local: made once")
    p.add_argument("--workers", type=int, default=0, help="local: LOCAL_WORKERS (default cores)")
    p.add_argument("--max-per-minute", type=int, default=100_000)
    p.add_argument("--timeout", type=float, default=300)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.events is None:
        args.events = 120 if args.backend == "local" else 2000
    result = asyncio.run(run(args))
    if args.backend == "local":
        return report(
            result,
            f"{result['events']} uploads of real 30 s clips, local backend, "
            f"{result['local_workers']} workers: {result['throughput_per_s']} tracks/s "
            f"(target {LOCAL_TARGET_PER_S}), {result['classifier_cpu_s_per_track']} CPU s per "
            f"track; end to end p50 {result['end_to_end_p50_ms']} ms; lost {result['lost']}, "
            f"failed {result['failed']}; load average {result['load_average_1m_before']} -> "
            f"{result['load_average_1m_after']} on {result['cores']} cores",
        )
    return report(
        result,
        f"{result['events']} uploads at {args.latency_ms:g} ms, concurrency {args.concurrency}, "
        f"{args.partitions} partitions: {result['throughput_per_s']}/s "
        f"(ideal {result['ideal_per_s']}/s, ratio {result['ratio']}); "
        f"end to end p50 {result['end_to_end_p50_ms']} ms, p99 {result['end_to_end_p99_ms']} ms; "
        f"lost {result['lost']}, paid twice {result['duplicate_classifications']}",
    )


if __name__ == "__main__":
    main()
