"""What the failover scenarios share: ``genres run all`` on the secured cluster as the service's
principal holding exactly its derived ACLs, the platform's uploads, readiness and metrics
sampled from outside, the log's loud lines counted, and the outcome events' duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from genres.config import load_settings
from genres.embedded import free_port
from genres.kafka.acls import SERVICE_ROLES, required_acls
from genres_contracts import topics
from tests.faults.harness import Figures, Roles, Track
from tests.support.bus import read_topic
from tests.support.fake_replicate import FakeReplicate
from tests.support.kafka_cluster import SecuredCluster
from tests.support.service import process_env

USER = "genres"


def run_all(
    cluster: SecuredCluster,
    prefix: str,
    database_url: str,
    fake: FakeReplicate,
    log_dir: Path,
    *,
    concurrency: int,
    **extra: str,
) -> tuple[Roles, str]:
    """``genres run all`` (not started) over SASL_SSL as ``User:genres``, whose ACLs become
    exactly those its roles need when they create their topics; returns it and the base URL
    of its health server. The group sessions are the service's defaults (10 s), not the
    tests' 1 s: a platform's failover, not a test bed's."""
    settings = load_settings(
        kafka_bootstrap_servers=cluster.bootstrap_servers, genres_topic_prefix=prefix
    )
    cluster.set_acls(f"User:{USER}", required_acls(settings, SERVICE_ROLES, creates_topics=True))
    port = free_port()
    env = process_env(
        cluster.bootstrap_servers,
        prefix,
        database_url,
        fake,
        concurrency=concurrency,
        KAFKA_SESSION_TIMEOUT_MS="10000",
        KAFKA_HEARTBEAT_INTERVAL_MS="3000",
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT=str(port),
        **cluster.settings_env(USER),
        **extra,
    )
    return Roles(env, log_dir), f"http://127.0.0.1:{port}"


async def upload(
    cluster: SecuredCluster, prefix: str, tracks: Sequence[Track], *, acks: int | str, rate: float
) -> int:
    """The platform's uploads of ``tracks``, ``rate`` per second, as a super user on the
    brokers' internal listener; ``acks="all"`` (idempotent) or ``1`` (the leader alone: it
    writes while too few replicas are in sync). Returns how many were acknowledged."""
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.internal_bootstrap_servers,
        acks=acks,
        enable_idempotence=acks == "all",
        linger_ms=5,
        # a failover takes a few seconds; the sends wait for it
        request_timeout_ms=60_000,
    )
    await producer.start()
    try:
        topic = f"{prefix}{topics.TRACK_UPLOADED}"
        sent = []
        started = time.monotonic()
        for index, track in enumerate(tracks, start=1):
            value = json.dumps(track.upload()).encode()
            sent.append(await producer.send(topic, value, key=str(track.id).encode()))
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        await asyncio.gather(*sent)
        return len(sent)
    finally:
        await producer.stop()


@dataclass
class Sample:
    at: float
    status: int
    """0: no answer."""
    body: dict[str, Any]


@dataclass
class Health:
    """``/readyz`` and ``/metrics`` of one process, asked from outside."""

    base: str
    session: aiohttp.ClientSession
    samples: list[Sample] = field(default_factory=list)

    async def ready(self) -> Sample:
        started = time.monotonic()
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with self.session.get(f"{self.base}/readyz", timeout=timeout) as reply:
                return Sample(started, reply.status, await reply.json())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return Sample(started, 0, {})

    async def stalled(self) -> float:
        """The highest ``genres_partition_stalled`` (0: none or no answer)."""
        return await self.metric("genres_partition_stalled")

    async def metric(self, name: str) -> float:
        """The highest value of the gauge ``name`` over its labels (0: none or no answer)."""
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with self.session.get(f"{self.base}/metrics", timeout=timeout) as reply:
                page = await reply.text()
        except (aiohttp.ClientError, TimeoutError):
            return 0.0
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith(name + "{")
        ]
        return max(values, default=0.0)

    @contextlib.asynccontextmanager
    async def sampling(self, every: float = 0.25) -> AsyncIterator[list[Sample]]:
        """``/readyz`` asked every ``every`` seconds while inside; the samples so far."""
        taken: list[Sample] = []

        async def loop() -> None:
            while True:
                taken.append(await self.ready())
                await asyncio.sleep(every)

        task = asyncio.create_task(loop())
        try:
            yield taken
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.samples += taken


@contextlib.asynccontextmanager
async def health(base: str) -> AsyncIterator[Health]:
    async with aiohttp.ClientSession() as session:
        yield Health(base, session)


@dataclass(frozen=True)
class Line:
    level: str
    logger: str
    message: str


def loud_lines(text: str) -> list[Line]:
    """The WARNING and ERROR lines of a console log (``<date> <time> LEVEL logger: message``)."""
    found = []
    for line in text.splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            found.append(Line(parts[2], parts[3].rstrip(":"), parts[4]))
    return found


def levels(lines: Iterable[Line]) -> dict[str, int]:
    counted = Counter(line.level for line in lines)
    return {level: counted.get(level, 0) for level in ("WARNING", "ERROR", "CRITICAL")}


def report(figures: Figures, record: Callable[[str, object], None]) -> None:
    """Print a scenario's figures as the fault suite does (``faults: {...}``) and keep them in
    the JUnit properties (``record_property``)."""
    row = figures.as_dict()
    for name, value in row.items():
        record(name, value)
    print("faults:", json.dumps(row, sort_keys=True))


def show(lines: Iterable[Line], width: int = 150) -> str:
    return "\n".join(f"  {line.level} {line.logger}: {line.message[:width]}" for line in lines)


async def outcome_duplicates(cluster: SecuredCluster, prefix: str) -> dict[str, int]:
    """``track.genres_classified`` as written: its records, the (track, file) pairs they are
    for, the records beyond one per pair (an outcome published again: a redelivered upload's
    ledger entry republished, same event id) and the pairs with more than one event id (a
    second classification: never allowed)."""
    records = await read_topic(
        cluster.internal_bootstrap_servers, f"{prefix}{topics.GENRES_CLASSIFIED}"
    )
    ids: dict[tuple[int, str], set[str]] = {}
    count: Counter[tuple[int, str]] = Counter()
    for record in records:
        event = json.loads(record.value)
        pair = (int(event["track_id"]), str(event["file_id"]))
        count[pair] += 1
        ids.setdefault(pair, set()).add(str(event["event_id"]))
    return {
        "records": len(records),
        "pairs": len(count),
        "republished": sum(n - 1 for n in count.values()),
        "classified_twice": sum(1 for found in ids.values() if len(found) > 1),
    }
