"""What every benchmark needs: a broker, a scratch database, the fake Replicate, processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.apache_kafka import ApacheKafka
from tests.support.database import LOCAL_CANDIDATES, _admin, _answers, database_url_for

from genres.config import Settings, load_settings
from genres.database.engine import to_async_url
from genres.database.migrate import upgrade
from genres.embedded import EmbeddedBroker, EmbeddedPostgres

GENRES = str(Path(sys.executable).with_name("genres"))


@contextlib.asynccontextmanager
async def kafka_broker() -> AsyncIterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set; else ``BENCH_BROKER``: ``tansu`` (the default,
    embedded) or ``kafka`` (Apache Kafka run with java, as the tests run it)."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if from_env:
        yield from_env
        return
    kind = os.environ.get("BENCH_BROKER", "tansu").strip().lower()
    if kind == "kafka":
        # Started from this (main) thread: the JVM dies with the thread that spawned it.
        kafka = ApacheKafka().start()
        print(f"broker: Apache Kafka {kafka.version}", flush=True)
        try:
            yield kafka.bootstrap_servers
        finally:
            kafka.close()
        return
    if kind != "tansu":
        raise SystemExit(f"BENCH_BROKER={kind!r}: expected tansu or kafka")
    print("broker: Tansu (embedded)", flush=True)
    broker = EmbeddedBroker()
    await broker.astart()
    try:
        yield broker.bootstrap_servers
    finally:
        await broker.astop()


@contextlib.asynccontextmanager
async def postgres_server() -> AsyncIterator[tuple[str, str]]:
    """(server URL, kind): the same order of preference as the test fixtures."""
    from_env = os.environ.get("DATABASE_URL", "").strip()
    if from_env:
        yield to_async_url(from_env), "env"
        return
    for candidate in LOCAL_CANDIDATES:
        if await _answers(candidate):
            yield candidate, "local"
            return
    embedded = EmbeddedPostgres()
    await embedded.astart()
    try:
        yield embedded.url, "embedded"
    finally:
        await embedded.astop()


@contextlib.asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A fresh migrated database, dropped afterwards."""
    name = f"genres_bench_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = database_url_for(server_url, name)
        await upgrade(url)
        yield url
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[tuple[str, str]]:
    """A broker and a fresh migrated database: (bootstrap servers, database URL)."""
    async with (
        kafka_broker() as bootstrap,
        postgres_server() as (server_url, _),
        scratch_database(server_url) as database_url,
    ):
        yield bootstrap, database_url


@contextlib.asynccontextmanager
async def fake_replicate_process(*knobs: str) -> AsyncIterator[str]:
    """The fake Replicate in its own process (its CPU must not slow the service's loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.fake_replicate",
        "--port",
        "0",
        *knobs,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.search(r"(http://\S+/v1)", line)
        if match is None:
            raise RuntimeError(f"fake replicate did not start: {line!r}")
        yield match.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def genres_process(
    *args: str, env: Mapping[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``genres ARGS`` as its own process, stopped with SIGTERM at the end."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_"))}
    with log.open("ab") as handle:
        process = await asyncio.create_subprocess_exec(
            GENRES, *args, env=clean | dict(env), stdout=handle, stderr=handle
        )
        # BENCH_PROFILE=classifier samples that role with py-spy (raw stacks beside the log).
        profiled = os.environ.get("BENCH_PROFILE")
        spy = None
        if profiled and profiled in args:
            out = log.with_name(f"{profiled}.pyspy.txt")
            spy = await asyncio.create_subprocess_exec(
                "py-spy", "record", "-f", "raw", "-o", str(out), "--nonblocking",
                "--pid", str(process.pid), stdout=handle, stderr=handle,
            )  # fmt: skip
        try:
            yield process
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await asyncio.wait_for(spy.wait(), 30)
            if process.returncode is None:
                process.terminate()
            await asyncio.wait_for(process.wait(), 90)


def bench_settings(bootstrap: str, database_url: str, **overrides: Any) -> Settings:
    """In-process roles on a fresh topic prefix, with fast group joins."""
    return load_settings(
        **{
            "kafka_bootstrap_servers": bootstrap,
            "database_url": database_url,
            "genres_topic_prefix": f"bench{uuid.uuid4().hex[:6]}.",
            "kafka_session_timeout_ms": 1000,
            "kafka_heartbeat_interval_ms": 300,
        }
        | overrides
    )


def report(result: dict[str, Any], *lines: str) -> dict[str, Any]:
    """Print a benchmark's summary ``lines``, then its figures as one JSON line (what
    scripts and the README tables read); returns the figures."""
    for line in lines:
        print(line)
    print(json.dumps(result))
    return result
