"""Issue 23 on the broker: the classifier role with the embedded model, given a partial mp3
(the first 5,000 bytes of an 8 s file, as a CDN serving a cut-short upload would), publishes a
`track.genres_failed` with `audio_truncated`, stores no predictions and does not try again; the
whole file is classified."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import Role, running
from genres.database.schema import genre_classifications
from genres_contracts import topics
from tests.support.audio import write_mp3
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer, read_topic, send_json, values
from tests.support.service import service_settings


class CDN:
    """Serves ``/whole.mp3`` (8 s) and ``/partial.mp3`` (its first 5,000 bytes); counts GETs."""

    def __init__(self, mp3: bytes) -> None:
        self.bodies = {"/whole.mp3": mp3, "/partial.mp3": mp3[:5_000]}
        self.gets: list[str] = []
        app = web.Application()
        app.router.add_get("/{name}", self.serve)
        self._runner = web.AppRunner(app)
        self.base = ""

    async def serve(self, request: web.Request) -> web.Response:
        self.gets.append(request.path)
        return web.Response(body=self.bodies[request.path], content_type="audio/mpeg")

    async def __aenter__(self) -> CDN:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest_asyncio.fixture
async def cdn(tmp_path: Path) -> AsyncIterator[CDN]:
    async with CDN(write_mp3(tmp_path / "eight.mp3", 8.0).read_bytes()) as running_cdn:
        yield running_cdn


async def test_a_partial_mp3_fails_as_truncated_and_the_whole_file_is_classified(
    kafka: KafkaTestBed, database_url: str, engine: AsyncEngine, cdn: CDN
) -> None:
    settings = service_settings(
        kafka,
        database_url,
        classifier_backend="local",
        local_workers=0,
        audio_allow_private_addresses=True,
    )
    partial = {
        "event_id": "up-1",
        "track_id": 1,
        "file_id": "p",
        "audio_url": f"{cdn.base}/partial.mp3",
    }
    whole = {
        "event_id": "up-2",
        "track_id": 2,
        "file_id": "w",
        "audio_url": f"{cdn.base}/whole.mp3",
    }
    async with (
        running(settings, frozenset({Role.CLASSIFIER})),
        producer(kafka.bootstrap_servers) as client,
    ):
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), partial, key="1")
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), whole, key="2")
        # A redelivery of the partial upload: the failure is replayed, not tried again.
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), partial, key="1")
        failed = values(
            await read_topic(kafka.bootstrap_servers, kafka.topic(topics.GENRES_FAILED), count=2)
        )
        classified = values(
            await read_topic(
                kafka.bootstrap_servers, kafka.topic(topics.GENRES_CLASSIFIED), count=1
            )
        )

    assert [event["track_id"] for event in failed] == [1, 1]
    first = failed[0]
    assert first["source_event_id"] == "up-1"
    assert first["error"]["kind"] == "audio_truncated"
    assert "0.29 s of the 8.00 s its file states" in first["error"]["message"]
    assert (first["retryable"], first["attempts"]) == (False, 1)
    assert failed[1]["error"] == first["error"]
    assert cdn.gets.count("/partial.mp3") == 1  # not retried, not fetched again

    assert [event["track_id"] for event in classified] == [2]
    assert classified[0]["predictions"]

    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    genre_classifications.c.track_id,
                    genre_classifications.c.status,
                    genre_classifications.c.predictions,
                ).order_by(genre_classifications.c.track_id)
            )
        ).all()
    assert [(row.track_id, row.status) for row in rows] == [(1, "failed"), (2, "succeeded")]
    assert rows[0].predictions is None
