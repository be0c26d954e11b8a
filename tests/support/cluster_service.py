"""The service on the secured cluster, driven from outside as a platform team runs it: topics
created by the cluster's admin (``KAFKA_CREATE_TOPICS=false``, topics as code), the service's
principal holding only the ACLs it is granted, ``genres`` processes configured by variables,
their JSON log lines read back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from genres.config import Settings, load_settings
from tests.support.kafka_cluster import SecuredCluster
from tests.support.process import GENRES, environment

#: Every role ``genres run all`` runs, and the request command.
EVERYTHING = ("classifier", "projector", "responder", "recommend")


def new_settings(**overrides: Any) -> Settings:
    """The names a deployment uses: a prefix of its own, topics never created by the service."""
    values: dict[str, Any] = {
        "genres_topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
        "kafka_create_topics": False,
    }
    return load_settings(**(values | overrides))


def create_topics(
    cluster: SecuredCluster, names: Iterable[str], *, partitions: int = 3
) -> list[str]:
    """``names``, created by the admin with the cluster's default replication, known to every
    running broker on return (the platform's topics as code: ``all_topics`` for a deployment)."""
    names = list(names)
    futures = cluster.admin().create_topics(
        [NewTopic(name, partitions, -1) for name in names], operation_timeout=30
    )
    for done in futures.values():
        done.result(timeout=60)
    cluster.wait_known(*names)
    return names


def service_env(
    cluster: SecuredCluster,
    settings: Settings,
    database_url: str,
    *,
    mechanism: str = "SCRAM-SHA-512",
    **extra: str,
) -> dict[str, str]:
    """A ``genres`` process's variables: the service's user (or its certificate), this
    deployment's prefix, topics that exist, JSON logs, fast group joins; ``extra`` on top."""
    return {
        **cluster.settings_env("genres", mechanism),
        "GENRES_TOPIC_PREFIX": settings.genres_topic_prefix,
        "KAFKA_CREATE_TOPICS": "false",
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_FETCH_MAX_WAIT_MS": "100",
        **extra,
    }


@dataclass
class Run:
    """A finished ``genres`` process."""

    args: tuple[str, ...]
    returncode: int | None
    """None: still running when it was stopped (SIGKILL)."""
    stdout: str
    stderr: str
    seconds: float
    logged: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        lines = (self.stdout + "\n" + self.stderr).splitlines()
        self.logged = [json.loads(line) for line in lines if line.startswith("{")]

    def errors(self) -> list[dict[str, Any]]:
        """The ERROR (and CRITICAL) log lines."""
        return [line for line in self.logged if line.get("level") in ("error", "critical")]

    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    def output(self, chars: int = 4000) -> str:
        return f"$ genres {' '.join(self.args)} -> {self.returncode}\n{self.stderr[-chars:]}"


class Process:
    """A running ``genres`` process whose output is collected."""

    def __init__(self, args: tuple[str, ...], process: asyncio.subprocess.Process) -> None:
        self.args = args
        self.process = process
        self.started = time.monotonic()
        self._out = asyncio.ensure_future(_read(process.stdout))
        self._err = asyncio.ensure_future(_read(process.stderr))

    async def wait(self, timeout: float) -> Run:
        """Its end within ``timeout`` seconds; killed past it (``returncode`` None)."""
        code: int | None
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            code = None
        seconds = time.monotonic() - self.started
        return Run(self.args, code, await self._out, await self._err, seconds)

    async def stop(self, timeout: float = 30.0) -> Run:
        """SIGTERM, then its end."""
        if self.process.returncode is None:
            self.process.terminate()
        return await self.wait(timeout)


async def _read(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await stream.read()).decode(errors="replace")


async def start(*args: str, env: Mapping[str, str]) -> Process:
    process = await asyncio.create_subprocess_exec(
        GENRES,
        *args,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return Process(args, process)


async def genres(*args: str, env: Mapping[str, str], timeout: float = 60.0) -> Run:
    """Run ``genres *args`` to its end (killed past ``timeout``)."""
    return await (await start(*args, env=env)).wait(timeout)


@contextlib.asynccontextmanager
async def running(*args: str, env: Mapping[str, str]) -> AsyncIterator[Process]:
    """``genres *args`` for the block; stopped (SIGTERM) after it unless it ended."""
    process = await start(*args, env=env)
    try:
        yield process
    finally:
        if process.process.returncode is None:
            await process.stop()


def produce(cluster: SecuredCluster, topic: str, value: dict[str, Any], key: str) -> None:
    """One JSON record written as the cluster's admin (the platform's producer)."""
    producer = Producer(cluster.admin_config() | {"acks": "all"})
    reports: list[Any] = []
    producer.produce(
        topic,
        json.dumps(value).encode(),
        key=key.encode(),
        on_delivery=lambda error, _msg: reports.append(error),
    )
    assert producer.flush(30) == 0, "the record was neither written nor refused"
    assert reports == [None], reports
