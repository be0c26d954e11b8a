"""A list of brokers, one of them down at start: every role starts and the pipeline flows."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import ALL_ROLES, running
from genres.config import Settings
from genres.embedded import free_port
from genres.kafka.client import genres_client
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.service import send_upload
from tests.support.waiting import eventually


async def _projected(engine: AsyncEngine, track_id: int) -> bool:
    async with engine.connect() as conn:
        extra = (
            await conn.execute(text("SELECT extra FROM tracks WHERE id = :id"), {"id": track_id})
        ).scalar_one()
    return "genre_predictions" in extra


async def test_all_roles_run_on_a_list_whose_first_broker_is_down(
    kafka: KafkaTestBed,
    make_settings: Callable[..., Settings],
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    # As an operator writes it: the dead broker first, a space after the comma.
    settings = make_settings(
        fake_replicate, kafka_bootstrap_servers=f"{down}, {kafka.bootstrap_servers}"
    )
    assert settings.kafka_bootstrap_servers == [down, kafka.bootstrap_servers]
    await insert_track(engine, 7, "f")

    async with running(settings, ALL_ROLES), producer(kafka.bootstrap_servers) as client:
        await send_upload(client, kafka, 7, "f")
        await eventually(lambda: _projected(engine, 7), what="track 7 projected")
        async with genres_client(settings) as recommend:
            reply = await recommend.recommended_tags(7, limit=3, timeout=10)

    assert reply.error is None
    assert reply.pending is False
    assert len(reply.tags) == 3
    assert fake_replicate.stats.creations == 1
