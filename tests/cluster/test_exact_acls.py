"""With exactly the ACLs ``genres acls`` derives, on topics the platform created (topics as
code), the whole job works on the secured cluster: ``genres run all`` turns ready, an upload is
classified (the local model, on the sample served over HTTP as a CDN would) and projected into
``tracks.extra``, and ``genres recommend`` answers. Over SASL_SSL (SCRAM-SHA-512, the private
CA), over mTLS (the principal from the client certificate), and with the first broker of the
list down from the start."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.demo import SAMPLE, serve_file
from genres.embedded import free_port
from genres.kafka.acls import required_acls
from genres.kafka.broker import all_topics
from genres_contracts import topics
from tests.support.cluster_service import (
    EVERYTHING,
    create_topics,
    genres,
    new_settings,
    produce,
    running,
    service_env,
)
from tests.support.database import insert_track
from tests.support.kafka_cluster import SecuredCluster
from tests.support.waiting import eventually

TRACK_ID, FILE_ID = 1, "sample1"


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, await response.json()


async def projected(engine: AsyncEngine) -> bool:
    query = text("SELECT extra ->> 'genre_predictions_file_id' FROM tracks WHERE id = :id")
    async with engine.connect() as connection:
        return (await connection.execute(query, {"id": TRACK_ID})).scalar() == FILE_ID


@pytest.mark.parametrize(
    ("mechanism", "down"),
    [("SCRAM-SHA-512", None), ("mTLS", None), ("SCRAM-SHA-512", 0)],
    ids=["sasl-scram", "mtls", "first-broker-down"],
)
async def test_exactly_the_derived_acls_run_the_whole_job(
    cluster: SecuredCluster,
    database_url: str,
    engine: AsyncEngine,
    mechanism: str,
    down: int | None,
) -> None:
    settings = new_settings()
    await asyncio.to_thread(create_topics, cluster, all_topics(settings))
    acls = required_acls(settings, EVERYTHING, creates_topics=False)
    await asyncio.to_thread(cluster.set_acls, "User:genres", acls)
    if down is not None:
        cluster.kill(down)
    port = free_port()
    env = service_env(
        cluster,
        settings,
        database_url,
        mechanism=mechanism,
        CLASSIFIER_BACKEND="local",
        AUDIO_ALLOW_PRIVATE_ADDRESSES="true",
        LOCAL_WORKERS="1",
    )
    with serve_file(SAMPLE) as audio_url:
        await insert_track(engine, TRACK_ID, FILE_ID, audio_url=audio_url)
        health = env | {"HEALTH_PORT": str(port), "HEALTH_HOST": "127.0.0.1"}
        async with running("run", "all", env=health) as service:

            async def ready() -> bool:
                if service.process.returncode is not None:
                    raise AssertionError((await service.wait(5)).output())
                try:
                    return (await readyz(port))[0] == 200
                except (aiohttp.ClientError, TimeoutError):
                    return False  # not listening yet, or its loop busy starting the roles

            await eventually(ready, within=90, interval=0.2, what="/readyz 200")
            upload = {"track_id": TRACK_ID, "file_id": FILE_ID, "audio_url": audio_url}
            topic = settings.topic(topics.TRACK_UPLOADED)
            await asyncio.to_thread(produce, cluster, topic, upload, str(TRACK_ID))
            await eventually(
                lambda: projected(engine), within=90, interval=0.2, what="the projection"
            )
            asked = await genres("recommend", str(TRACK_ID), "--json", env=env, timeout=60)
            status, body = await readyz(port)
            run = await service.stop()

    assert asked.returncode == 0, asked.output()
    reply = json.loads(asked.stdout)
    assert reply["track_id"] == TRACK_ID
    assert reply["tags"], reply
    assert (status, body["status"]) == (200, "ok"), body
    assert run.returncode == 0, run.output()
    assert run.errors() == [], run.output()
