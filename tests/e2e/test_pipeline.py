"""The whole pipeline in one process: upload -> classification -> projection -> reply."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import ALL_ROLES, running
from genres.config import Settings
from genres.kafka.client import genres_client
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.service import send_upload
from tests.support.waiting import eventually


async def stored_predictions(engine: AsyncEngine, track_id: int) -> dict[str, object] | None:
    async with engine.connect() as conn:
        extra = (
            await conn.execute(text("SELECT extra FROM tracks WHERE id = :id"), {"id": track_id})
        ).scalar_one()
    return extra if "genre_predictions" in extra else None


async def wait_for_predictions(engine: AsyncEngine, track_id: int) -> dict[str, object]:
    found: list[dict[str, object]] = []

    async def projected() -> bool:
        extra = await stored_predictions(engine, track_id)
        found.extend([extra] if extra is not None else [])
        return bool(found)

    await eventually(projected, what=f"track {track_id} projected")
    return found[0]


async def test_an_upload_ends_in_extra_and_a_request_gets_it_back_minus_own_tags(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
) -> None:
    await insert_track(engine, 668, "b2c1e0", extra={"plays": 12})
    async with running(replicate_settings, ALL_ROLES), producer(kafka.bootstrap_servers) as client:
        await send_upload(client, kafka, 668, "b2c1e0")
        extra = await wait_for_predictions(engine, 668)
        predictions = extra["genre_predictions"]
        assert isinstance(predictions, list)
        # The track already carries the second-best genre as a tag, in another case.
        own = predictions[1]["name"].upper()
        async with engine.begin() as conn:
            tag_id = (
                await conn.execute(
                    text("INSERT INTO tags (name) VALUES (:n) RETURNING id"), {"n": own}
                )
            ).scalar_one()
            await conn.execute(
                text("INSERT INTO track_tags (track_id, tag_id) VALUES (668, :t)"), {"t": tag_id}
            )
        async with genres_client(replicate_settings) as client:
            reply = await client.recommended_tags(668, limit=3, timeout=10)

    assert extra["plays"] == 12
    assert extra["genre_predictions_file_id"] == "b2c1e0"
    assert len(predictions) == 10
    assert reply.available is True
    assert reply.pending is False
    assert reply.error is None
    expected = [p for p in predictions if p["name"] != own.lower()][:3]
    assert [(t.name, t.score) for t in reply.tags] == [
        (p["name"], p["confidence"]) for p in expected
    ]
    assert fake_replicate.stats.creations == 1


async def test_a_request_for_an_unclassified_track_classifies_it_on_demand_and_waits(
    kafka: KafkaTestBed,
    replicate_settings: Settings,
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
) -> None:
    await insert_track(engine, 5, "v1")
    async with running(replicate_settings, ALL_ROLES), genres_client(replicate_settings) as client:
        replies = await asyncio.gather(
            *(client.recommended_tags(5, limit=4, wait_ms=15_000) for _ in range(5))
        )
        extra = await wait_for_predictions(engine, 5)

    assert all(reply.pending is False for reply in replies)
    assert all(len(reply.tags) == 4 for reply in replies)
    assert len({json.dumps([t.model_dump() for t in r.tags]) for r in replies}) == 1
    assert extra["genre_predictions_file_id"] == "v1"
    assert fake_replicate.stats.creations == 1
