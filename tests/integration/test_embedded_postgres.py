"""``EmbeddedPostgres`` starts (as root too), serves asyncpg through SQLAlchemy, migrates, stops."""

from __future__ import annotations

import asyncio
import os
import time

from sqlalchemy import inspect, text

from genres.database.engine import create_engine
from genres.database.migrate import VERSION_TABLE, head_revision, upgrade
from genres.database.schema import ALL_TABLES
from genres.embedded import EmbeddedPostgres


def _gone(pid: int) -> bool:
    """No such process, or a zombie (the postmaster is re-parented to PID 1, which in a
    container may not reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in {"Z", "X"}
    except FileNotFoundError:
        return True


# Runs whatever the other fixtures chose: it starts its own server.


async def test_embedded_postgres_starts_migrates_and_stops_leaving_no_process_or_data() -> None:
    started = time.monotonic()
    server = await EmbeddedPostgres().astart()
    start_seconds = time.monotonic() - started
    try:
        pid = server.pid
        assert pid is not None
        url = server.url
        assert url.startswith("postgresql+asyncpg://")
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                assert await connection.scalar(text("SELECT 1")) == 1
            assert await upgrade(url) == head_revision()
            async with engine.connect() as connection:
                tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            assert tables == {*ALL_TABLES, VERSION_TABLE}
        finally:
            await engine.dispose()
        data_dir = server.data_dir
    finally:
        await server.astop()
    assert not server.started
    assert not await asyncio.to_thread(os.path.exists, data_dir)
    assert _gone(pid)
    assert start_seconds < 30
