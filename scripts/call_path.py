"""Which modules of ``service/genres`` run, in call order, for one upload and one request.

    uv run python scripts/call_path.py        # about 40 s: a real broker and PostgreSQL

It runs the service as the integration tests do (``genres.bootstrap.running`` on the tests'
Kafka, PostgreSQL and fake Replicate) and records, with ``sys.setprofile``, every call into a
function whose code is in ``service/genres`` (comprehensions and lambdas included; a coroutine
resumed after an ``await`` is not a call). Two paths:

- upload: the classifier and the projector on Replicate, from the record on
  ``track.uploaded`` to the row in ``tracks.extra``;
- request: the responder, from a ``recommended-tags`` request (cached predictions) to its
  reply.

Each path follows a warm-up of the same kind (so one-off work is not counted) and a quiet
spell of 3 s. Background, not the path (the fetch loop's polls, the stall watchdog): a call
its asyncio task also made in the quiet spell, and every call of a task whose first call was
one made then (by any task). What remains is every call of every task the record or request
caused (its own task, the batchers, asyncpg's callbacks), in time order; with
``CALL_PATH_VERBOSE=1`` each is printed. The counts (docs/decisions/0008-a-folder-per-role.md):
a place is a folder of ``service/genres`` (the root is one, ``classify/replicate/`` one apart
from ``classify/``); in the order modules first run, a switch is a move to another place and a
return is a switch into a place already left. The same counts over every call follow them.
"""

from __future__ import annotations

import asyncio
import dis
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = str(Path(__file__).resolve().parents[1] / "service" / "genres") + "/"
RESUME = dis.opmap["RESUME"]
QUIET_SECONDS = 3.0

Call = tuple[str, str, str]
"""Module (relative to ``service/``), function, asyncio task."""


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if event != "call" or not code.co_filename.startswith(ROOT):
            return
        at = frame.f_lasti
        if code.co_code[at] != RESUME or code.co_code[at + 1] != 0:
            return  # RESUME 0 starts a call; a coroutine resumed after a wait is not one
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        owner = task.get_name() if task else threading.current_thread().name
        module = "genres/" + code.co_filename.removeprefix(ROOT)
        self.calls.append((module, code.co_qualname, owner))

    @contextmanager
    def recording(self) -> Iterator[list[Call]]:
        """Calls made inside the block (the list fills as they happen)."""
        self.calls = []
        sys.setprofile(self._profile)
        threading.setprofile(self._profile)
        try:
            yield self.calls
        finally:
            sys.setprofile(None)
            threading.setprofile(None)


def place(module: str) -> str:
    return module.rsplit("/", 1)[0] + "/"


def moves(modules: list[str]) -> tuple[int, int]:
    """Switches between places along ``modules``, and how many go back to a place left."""
    places = [place(m) for m in modules]
    walk = [p for i, p in enumerate(places) if i == 0 or places[i - 1] != p]
    returns = sum(1 for i, p in enumerate(walk) if p in walk[:i])
    return len(walk) - 1, returns


def on_path(quiet: list[Call], run: list[Call]) -> list[Call]:
    """``run`` less the background: a call its task also made in the quiet spell, and every
    call of a task whose first call was one seen in the quiet spell (from any task)."""
    seen = set(quiet)
    background = {(module, function) for module, function, _ in quiet}
    first: dict[str, tuple[str, str]] = {}
    for module, function, task in run:
        first.setdefault(task, (module, function))
    return [call for call in run if call not in seen and first[call[2]] not in background]


def report(name: str, quiet: list[Call], run: list[Call]) -> None:
    path = on_path(quiet, run)
    if os.environ.get("CALL_PATH_VERBOSE"):
        for module, function, task in path:
            print(f"  {module:40} {function:50} {task}")
    modules = list(dict.fromkeys(module for module, _, _ in path))
    places = list(dict.fromkeys(place(m) for m in modules))
    switches, returns = moves(modules)
    every_switch, every_return = moves([module for module, _, _ in path])
    print(f"\n{name}: {len(modules)} modules in {len(places)} places")
    print(f"  in the order modules first run: {switches} switches, {returns} returns")
    print(f"  over all {len(path)} calls: {every_switch} switches, {every_return} returns")
    for module in modules:
        print(f"  {module}")


async def quiet_then(recorder: Recorder) -> list[Call]:
    with recorder.recording() as quiet:
        await asyncio.sleep(QUIET_SECONDS)
    return list(quiet)


async def test_upload(kafka: Any, replicate_settings: Any, engine: AsyncEngine) -> None:
    from tests.support.bus import producer, send_json
    from tests.support.database import insert_track
    from tests.support.waiting import eventually

    from genres.bootstrap import Role, running
    from genres_contracts import topics

    async def send(client: Any, track_id: int) -> None:
        await insert_track(engine, track_id, "f1")
        url = f"https://cdn.test/{track_id}/f1.mp3"
        upload = {"track_id": track_id, "file_id": "f1", "audio_url": url}
        await send_json(client, kafka.topic(topics.TRACK_UPLOADED), upload, key=str(track_id))

        async def projected() -> bool:
            async with engine.connect() as connection:
                extra = await connection.scalar(
                    text("SELECT extra FROM tracks WHERE id = :id"), {"id": track_id}
                )
            return bool(extra and "genre_predictions" in extra)

        await eventually(projected)

    recorder = Recorder()
    roles = frozenset({Role.CLASSIFIER, Role.PROJECTOR})
    async with running(replicate_settings, roles), producer(kafka.bootstrap_servers) as client:
        await send(client, 1)
        quiet = await quiet_then(recorder)
        with recorder.recording() as run:
            await send(client, 2)
            await asyncio.sleep(0.5)  # the offset commit, if after the row
    report("upload (classifier and projector, Replicate)", quiet, run)


async def test_request(kafka: Any, database_url: str, engine: AsyncEngine) -> None:
    from tests.support.database import insert_track
    from tests.support.service import service_settings

    from genres.bootstrap import Role, running
    from genres.kafka.client import genres_client

    predictions = [{"name": "ambient electronic", "confidence": 0.5}]
    extra = {"genre_predictions": predictions, "genre_predictions_file_id": "f1"}
    for track_id in (1, 2):
        await insert_track(engine, track_id, "f1", extra=extra)
    settings = service_settings(kafka, database_url, classifier_backend="local")
    recorder = Recorder()
    async with (
        running(settings, frozenset({Role.RESPONDER}), engine=engine),
        genres_client(settings) as client,
    ):
        assert (await client.recommended_tags(1)).available
        quiet = await quiet_then(recorder)
        with recorder.recording() as run:
            assert (await client.recommended_tags(2)).available
    report("request (responder, cached predictions)", quiet, run)


if __name__ == "__main__":
    # The tests' fixtures (tests/conftest.py) start the broker, the database and the fake.
    args = [__file__, "-p", "tests.conftest", "-q", "-s", "-p", "no:cacheprovider"]
    sys.exit(pytest.main([*args, *sys.argv[1:]]))
