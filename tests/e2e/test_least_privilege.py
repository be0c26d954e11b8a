"""The whole pipeline as a PostgreSQL role that owns nothing and holds only `genres grants`'.

The test's database was migrated by its owner; the roles then run in one process as another
login role: an upload (with auto-tags) ends in ``tracks.extra`` and the tracks' tags, a
request gets the tags back, and a request for a track never classified is classified on
demand (the responder's markers, the projector's clearing of them, the Replicate pace).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import ALL_ROLES, running
from genres.database.grants import ROLES, required_grants
from genres.kafka.client import genres_client
from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer, send_json
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.grants import role_holding
from tests.support.service import service_settings
from tests.support.waiting import eventually


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar_one()


async def test_the_roles_run_as_a_role_holding_only_the_grants_they_need(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    await insert_track(engine, 668, "b2c1e0", extra={"plays": 12})
    await insert_track(engine, 5, "v1")
    async with role_holding(database_url, required_grants(ROLES)) as url:
        role = make_url(url).username
        settings = service_settings(kafka, url, fake_replicate)
        async with running(settings, ALL_ROLES), producer(kafka.bootstrap_servers) as client:
            upload = {
                "track_id": 668,
                "file_id": "b2c1e0",
                "audio_url": "https://cdn.test/668.mp3",
                "auto_tag": True,
            }
            await send_json(client, kafka.topic(topics.TRACK_UPLOADED), upload, key="668")

            async def tagged() -> bool:
                count = "SELECT count(*) FROM track_tags WHERE track_id = 668"
                return int(await scalar(engine, count)) > 0

            await eventually(tagged, what="track 668 projected and tagged")
            async with genres_client(settings) as requests:
                reply = await requests.recommended_tags(668, limit=3, timeout=10)
                on_demand = await requests.recommended_tags(5, limit=3, wait_ms=15_000)
            # Every connection the service holds is the role's.
            sessions = await scalar(
                engine,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = :role "
                "AND datname = current_database()",
                role=role,
            )
        extra = await scalar(engine, "SELECT extra FROM tracks WHERE id = 668")
        owned = await scalar(
            engine,
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = :role",
            role=role,
        )

    assert sessions > 0
    assert owned == 0
    assert extra["plays"] == 12
    assert extra["genre_predictions_file_id"] == "b2c1e0"
    assert reply.available is True
    assert reply.error is None
    assert len(reply.tags) > 0
    assert on_demand.pending is False
    assert on_demand.error is None
    assert len(on_demand.tags) == 3
    assert fake_replicate.stats.creations == 2
