"""``genres run all`` while its only broker stops answering: not ready (the partitions named)
within the stall bound, ready again when the broker is back, and a SIGTERM while it is away
ends the process with 0 within the shutdown deadline, without a traceback.

Runs on an Apache Kafka node of its own (frozen with SIGSTOP: connections stay open and
nothing is answered, the hardest case for a shutdown), so it needs Java and the cached jars.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from genres.bootstrap import SHUTDOWN_SECONDS
from genres.embedded import free_port
from genres_contracts import topics
from tests.support import apache_kafka
from tests.support.broker import KafkaTestBed
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import start_genres, stop
from tests.support.service import process_env, upload_numbered_tracks
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(240)]

STALL_SECONDS = 3


@pytest.fixture
def node() -> Iterator[apache_kafka.ApacheKafka]:
    """A private Apache Kafka node (the session's broker must keep answering other tests)."""
    if not apache_kafka.available():
        pytest.skip("needs Java 17+ and Apache Kafka's jars (tests.support.apache_kafka)")
    broker = apache_kafka.ApacheKafka().start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        broker.close()


async def readiness(session: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    try:
        async with session.get(f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as reply:
            return reply.status, await reply.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


async def test_unreachable_broker_turns_not_ready_and_sigterm_still_exits_cleanly(
    node: apache_kafka.ApacheKafka, database_url: str, fake_replicate: FakeReplicate, tmp_path: Path
) -> None:
    assert node.pid is not None
    kafka = KafkaTestBed(node.bootstrap_servers, "t0.", "kafka")
    port = free_port()
    env = process_env(
        kafka.bootstrap_servers,
        kafka.prefix,
        database_url,
        fake_replicate,
        concurrency=4,
        KAFKA_ENABLE_IDEMPOTENCE="true",
        KAFKA_STALL_SECONDS=str(STALL_SECONDS),
        HEALTH_PORT=str(port),
        HEALTH_HOST="127.0.0.1",
    )
    log = tmp_path / "run-all.log"
    process = await start_genres("run", "all", env=env, log=log)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        try:
            last: dict[str, Any] = {}

            async def ready() -> bool:
                nonlocal last
                status, last = await readiness(session, base)
                return status == 200

            uploads = f"{kafka.topic(topics.TRACK_UPLOADED)}["

            async def not_ready_for_partitions() -> bool:
                """Not ready, naming the partitions the classifier reads (idle ones too)."""
                nonlocal last
                status, last = await readiness(session, base)
                return status == 503 and uploads in last["checks"].get("partitions", "")

            await eventually(ready, within=90, what="ready")
            await upload_numbered_tracks(kafka, 3)
            await asyncio.sleep(2)

            os.kill(node.pid, signal.SIGSTOP)
            await eventually(
                not_ready_for_partitions, within=10 * STALL_SECONDS + 15, what="not ready"
            )
            assert "metadata request" in last["checks"]["partitions"], last

            os.kill(node.pid, signal.SIGCONT)
            await eventually(ready, within=60, what="ready again after the broker is back")

            os.kill(node.pid, signal.SIGSTOP)
            await asyncio.sleep(STALL_SECONDS)
            started = time.monotonic()
            code: int | None = None
            with contextlib.suppress(TimeoutError):
                code = await stop(process, timeout=SHUTDOWN_SECONDS + 15)
            took = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            os.kill(node.pid, signal.SIGCONT)
    output = log.read_text()
    print(f"SIGTERM with the broker frozen: exit {code} after {took:.1f} s")
    # Console lines: "<date> <time> LEVEL logger: message".
    lines = [line.split(" ", 4) for line in output.splitlines()]
    loud = [parts for parts in lines if len(parts) == 5 and parts[2] in ("WARNING", "ERROR")]
    print(
        f"{sum(p[2] == 'WARNING' for p in loud)} WARNING and "
        f"{sum(p[2] == 'ERROR' for p in loud)} ERROR lines in {len(lines)}"
    )
    for parts in loud:
        print("  ", parts[2], parts[3], parts[4][:110])
    # The client's own lines are warnings: the service's stall lines say what is wrong.
    client_errors = [p for p in loud if p[2] == "ERROR" and not p[3].startswith("genres.obs")]
    assert client_errors == [], output[-4000:]
    assert code == 0, output[-4000:]
    assert took < SHUTDOWN_SECONDS + 5, output[-4000:]
    assert "Traceback" not in output, output[-6000:]
    assert "CancelledError" not in output, output[-6000:]
