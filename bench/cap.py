"""``bench cap``: a backlog against Replicate's account cap, with a rolling restart midway.

The fake Replicate enforces the cap as a strict sliding window (600 creations in any 60 s,
429 with Replicate's "resets in ~Ns" beyond it) with predictions of 2 s ± 0.5 s; the
classifiers run with default settings (600 a minute, 64 in flight). N uploads are published at
once, then:

1. classifier A starts cold on the backlog;
2. after a third of the creations, classifier B starts beside it (a rolling restart: for a
   while two processes share the account);
3. after half of them, A is killed (SIGKILL); B takes over its partitions and resumes the
   predictions A had on record;
4. B drains the backlog.

It prints the steady creation rate (from the first creation to the last), the rate in each
whole minute, the most creations the fake saw in any 60 s window, and the 429s: the cap is held
when the rate is within 2% under 10/s, no window holds over 600 and no creation was throttled.

    uv run python -m bench cap --events 2000     # ~210 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench.infra import (
    fake_replicate_process,
    genres_process,
    report,
    servers,
)
from bench.pipeline import FAKE_TOKEN, _collect, _outcome_consumer, _publish
from genres.config import load_settings
from genres.kafka.broker import ensure_topics

CAP = 600
WINDOW_S = 60.0


def gaps(times: list[float], longer_than: float) -> list[tuple[float, float]]:
    """(when, seconds) of each pause between two creations longer than ``longer_than``."""
    return [
        (earlier, later - earlier)
        for earlier, later in itertools.pairwise(times)
        if later - earlier > longer_than
    ]


def per_minute(times: list[float]) -> list[int]:
    """Creations in each whole minute from the first creation (the partial last one left out)."""
    if not times:
        return []
    first = times[0]
    minutes = int((times[-1] - first) // 60)
    counts = [0] * minutes
    for moment in times:
        index = int((moment - first) // 60)
        if index < minutes:
            counts[index] += 1
    return counts


async def run(args: argparse.Namespace) -> dict[str, Any]:
    knobs = [
        "--latency-ms", str(args.latency_ms),
        "--latency-jitter-ms", str(args.jitter_ms),
        "--max-creations-per-minute", str(CAP),
        "--window-s", str(WINDOW_S),
    ]  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="genres-bench-cap-"))
    print(f"logs in {workdir}", flush=True)
    async with (
        servers() as (bootstrap, database_url),
        fake_replicate_process(*knobs) as replicate_url,
    ):
        # Default settings: REPLICATE_MAX_PREDICTIONS_PER_MINUTE (600) and the concurrency
        # are the service's own.
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "CLASSIFIER_BACKEND": "replicate",
            "REPLICATE_API_TOKEN": FAKE_TOKEN,
            "REPLICATE_BASE_URL": replicate_url,
            "KAFKA_TOPIC_PARTITIONS": str(args.partitions),
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "WARNING",
        }
        await ensure_topics(load_settings(**{k.lower(): v for k, v in env.items()}))
        consumer = await _outcome_consumer(bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        root = replicate_url.removesuffix("/v1")
        log = workdir / "service.log"
        steps: list[str] = []
        try:
            async with httpx.AsyncClient(base_url=root) as http:

                async def creations() -> int:
                    stats = (await http.get("/_fake/stats")).json()
                    return int(stats["creations"])

                ids = range(1, args.events + 1)
                started = time.monotonic()
                sent = await _publish(producer, ids)
                collecting = asyncio.ensure_future(_collect(consumer, set(ids), args.timeout))

                async def until_created(count: int) -> None:
                    while not collecting.done():
                        if await creations() >= count:
                            return
                        await asyncio.sleep(0.2)

                def step(what: str) -> None:
                    steps.append(f"{time.monotonic() - started:7.1f}s {what}")
                    print(steps[-1], flush=True)

                async with contextlib.AsyncExitStack() as stack:
                    first = await stack.enter_async_context(
                        genres_process("run", "classifier", env=env, log=log)
                    )
                    step("classifier A started (cold)")
                    await until_created(args.events // 3)
                    await stack.enter_async_context(
                        genres_process("run", "classifier", env=env, log=log)
                    )
                    step(f"{await creations()} created: classifier B started beside A")
                    await until_created(args.events // 2)
                    first.kill()
                    await first.wait()
                    step(f"{await creations()} created: classifier A killed (SIGKILL)")
                    arrived, failed = await collecting
                    step(f"{len(arrived)} outcomes published")
                stats = (await http.get("/_fake/stats")).json()
                arrivals = (await http.get("/_fake/creations")).json()
                # The fake's clock to the bench's: seconds since the bench published.
                offset = time.monotonic() - started - arrivals["now"]
                times: list[float] = [moment + offset for moment in arrivals["times"]]
        finally:
            await producer.stop()
            await consumer.stop()

    span = times[-1] - times[0] if len(times) > 1 else float("inf")
    overall = (len(times) - 1) / span
    # The pace while there was work to pace: a pause longer than a second between two
    # creations is a classifier without partitions (joining the group, or waiting for a
    # killed one's session to expire), not the pacer; each is listed.
    idle = gaps(times, 1.0)
    steady = (len(times) - 1 - len(idle)) / (span - sum(length for _, length in idle))
    minutes = per_minute(times)
    return {
        "events": args.events,
        "cap_per_minute": CAP,
        "replicate_latency_ms": args.latency_ms,
        "replicate_latency_jitter_ms": args.jitter_ms,
        "creations": stats["creations"],
        "steady_creations_per_s": round(steady, 3),
        "overall_creations_per_s": round(overall, 3),
        "pauses_over_1s": [f"{length:.1f}s at {when:.1f}s" for when, length in idle],
        "first_creation_s": round(times[0], 1),
        "cap_per_s": CAP / WINDOW_S,
        "steady_vs_cap": round(steady / (CAP / WINDOW_S), 4),
        "creations_per_whole_minute": minutes,
        # Counted by the fake as the creations arrive, on its own clock.
        "max_creations_in_any_60s": stats["max_creations_in_window"],
        "throttled_429": stats["rejected_429"],
        "throttled_by_window": stats["rate_limited_by_window"],
        "lost": args.events - len(arrived),
        "failed": failed,
        "paid_twice": sum(stats["creations_per_url"].values()) - len(stats["creations_per_url"]),
        "first_upload_to_last_outcome_s": round(max(arrived.values()) - min(sent.values()), 1)
        if arrived
        else None,
        "steps": steps,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench cap", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, default=2000)
    p.add_argument("--jitter-ms", type=float, default=500)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = asyncio.run(run(args))
    held = (
        0.98 <= result["steady_vs_cap"] <= 1.0
        and result["max_creations_in_any_60s"] <= CAP
        and result["throttled_429"] == 0
    )
    return report(
        result,
        f"{result['creations']} creations for {result['events']} uploads: steady "
        f"{result['steady_creations_per_s']}/s (cap {CAP / WINDOW_S:g}/s, "
        f"{result['steady_vs_cap']:.2%}; {result['overall_creations_per_s']}/s with the pauses "
        f"{result['pauses_over_1s']}), per whole minute {result['creations_per_whole_minute']}; "
        f"most in any 60 s {result['max_creations_in_any_60s']} (cap {CAP}); "
        f"429s {result['throttled_429']}; lost {result['lost']}, paid twice "
        f"{result['paid_twice']}: cap {'held' if held else 'NOT held'}",
    )


if __name__ == "__main__":
    main()
