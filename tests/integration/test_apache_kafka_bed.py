"""The Apache Kafka the tests start: no JVM outlives a killed session; what differs from Tansu."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError

from tests.support import apache_kafka
from tests.support.broker import KafkaTestBed
from tests.support.ci import missing

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from tests.support.apache_kafka import ApacheKafka
node = ApacheKafka().start()
print(node.pid, node.dir, flush=True)
time.sleep(600)
"""


def _require_java() -> None:
    if not apache_kafka.available():
        message = "Java 17+ and Maven (or cached jars) are needed to start Apache Kafka"
        missing(message)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: only its parent (gone) could reap it
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_a_kill_9_of_the_session_takes_its_broker_along() -> None:
    _require_java()
    # The context closes the pipes (else the garbage collector reports them unclosed).
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            line = holder.stdout.readline()
            assert line, holder.stderr.read() if holder.stderr else ""
            jvm_pid, folder = int(line.split()[0]), Path(line.split()[1])
            assert _alive(jvm_pid)
            assert folder.is_dir()

            holder.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel acts
            holder.wait(timeout=10)

            deadline = time.monotonic() + 10
            while _alive(jvm_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(jvm_pid), "the broker outlived the killed session"
            # the next session removes what the killed one left
            apache_kafka.sweep_stale_dirs()
            assert not folder.exists()
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()


async def test_topics_are_created_by_their_users_not_by_the_broker(kafka: KafkaTestBed) -> None:
    """Apache Kafka here never creates a topic on first use (the service must create its own);
    Tansu does, on any metadata request: a test that passes on Tansu alone can hide a missing
    topic creation."""
    if kafka.kind == "env":
        pytest.skip("an outside broker's auto-creation setting is unknown")
    client = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=2000, linger_ms=1
    )
    await client.start()
    try:
        if kafka.is_tansu:
            await client.send_and_wait(kafka.topic("never-created"), b"x")
        else:
            with pytest.raises(UnknownTopicOrPartitionError):
                await client.send_and_wait(kafka.topic("never-created"), b"x")
    finally:
        await client.stop()
