"""With exactly the ACLs ``genres acls`` derives, on topics the platform created (topics as
code), the whole job works on the secured cluster: ``genres run all`` turns ready, an upload is
classified (the local model, on the sample served over HTTP as a CDN would) and projected into
``tracks.extra``, and ``genres recommend`` answers. Over SASL_SSL (SCRAM-SHA-512, the private
CA), over mTLS (the principal from the client certificate), and with the first broker of the
list down from the start."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.cli.sandbox import SAMPLE, serve_file
from genres.config import Settings
from genres.embedded import free_port
from genres.kafka.acls import Acl, required_acls
from genres.kafka.broker import all_topics
from genres_contracts import topics
from tests.support.cluster_service import (
    EVERYTHING,
    Run,
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


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, await response.json()


async def projected(engine: AsyncEngine, track_id: int, file_id: str) -> bool:
    query = text("SELECT extra ->> 'genre_predictions_file_id' FROM tracks WHERE id = :id")
    async with engine.connect() as connection:
        return (await connection.execute(query, {"id": track_id})).scalar() == file_id


@dataclass
class Job:
    """One deployment's whole job: what ``recommend`` said, ``/readyz`` then, the run."""

    asked: Run
    readiness: tuple[int, dict[str, Any]]
    run: Run

    def check(self, track_id: int) -> None:
        assert self.asked.returncode == 0, self.asked.output()
        reply = json.loads(self.asked.stdout)
        assert reply["track_id"] == track_id
        assert reply["tags"], reply
        status, body = self.readiness
        assert (status, body["status"]) == (200, "ok"), body
        assert self.run.returncode == 0, self.run.output()
        assert self.run.errors() == [], self.run.output()


def deployment(cluster: SecuredCluster) -> tuple[Settings, list[Acl]]:
    """A deployment's topics, created by the admin, and the ACLs ``genres acls`` gives it."""
    settings = new_settings()
    create_topics(cluster, all_topics(settings))
    return settings, required_acls(settings, EVERYTHING, creates_topics=False)


async def whole_job(
    cluster: SecuredCluster,
    settings: Settings,
    database_url: str,
    engine: AsyncEngine,
    *,
    mechanism: str,
    track_id: int,
) -> Job:
    """Start ``genres run all`` until ready, upload a track, wait for its projection, ask for
    its tags, stop."""
    port = free_port()
    file_id = f"sample{track_id}"
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
        await insert_track(engine, track_id, file_id, audio_url=audio_url)
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
            upload = {"track_id": track_id, "file_id": file_id, "audio_url": audio_url}
            topic = settings.topic(topics.TRACK_UPLOADED)
            await asyncio.to_thread(produce, cluster, topic, upload, str(track_id))
            await eventually(
                lambda: projected(engine, track_id, file_id),
                within=90,
                interval=0.2,
                what="the projection",
            )
            asked = await genres("recommend", str(track_id), "--json", env=env, timeout=60)
            readiness = await readyz(port)
            run = await service.stop()
    return Job(asked, readiness, run)


async def test_over_sasl_scram_and_over_mtls(
    cluster: SecuredCluster, database_url: str, engine: AsyncEngine
) -> None:
    """Two deployments side by side, one per way in; the certificate's principal is the SASL
    user's (``CN=genres``), granted both deployments' ACLs."""
    (scram, scram_acls), (mtls, mtls_acls) = [
        await asyncio.to_thread(deployment, cluster) for _ in range(2)
    ]
    await asyncio.to_thread(cluster.set_acls, "User:genres", scram_acls + mtls_acls)
    over_scram, over_mtls = await asyncio.gather(
        whole_job(cluster, scram, database_url, engine, mechanism="SCRAM-SHA-512", track_id=1),
        whole_job(cluster, mtls, database_url, engine, mechanism="mTLS", track_id=2),
    )
    over_scram.check(1)
    over_mtls.check(2)


async def test_with_the_first_broker_of_the_list_down(
    cluster: SecuredCluster, database_url: str, engine: AsyncEngine
) -> None:
    settings, acls = await asyncio.to_thread(deployment, cluster)
    await asyncio.to_thread(cluster.set_acls, "User:genres", acls)
    cluster.kill(0)
    job = await whole_job(
        cluster, settings, database_url, engine, mechanism="SCRAM-SHA-512", track_id=1
    )
    job.check(1)
