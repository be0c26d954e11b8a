"""PostgreSQL fixtures.

* ``postgres_server_url`` (session): a ``postgresql+asyncpg://`` URL of a server the tests may
  create databases on: ``DATABASE_URL`` when set, else a testcontainers PostgreSQL when Docker
  answers, else the local server on 127.0.0.1:5432 when it answers (user ``postgres``, then
  ``root``), else an embedded PostgreSQL (``genres.embedded.EmbeddedPostgres``).
  ``GENRES_TESTS_POSTGRES=embedded`` forces the embedded server.
* ``migrated_template`` (session): a database migrated once, cloned by ``database_url``.
* ``database_url`` (function): a fresh, migrated, empty database for this test
  (``CREATE DATABASE g_<8 hex> TEMPLATE ...``), dropped afterwards.
* ``engine`` (function, async): an ``AsyncEngine`` on ``database_url``, disposed afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from genres.database.engine import create_engine, to_async_url
from genres.database.migrate import upgrade
from genres.embedded import EmbeddedPostgres
from tests.support.infra import FallbackWarning, docker_available, run_async

POSTGRES_IMAGE = os.environ.get("GENRES_TESTS_POSTGRES_IMAGE", "postgres:17-alpine")
LOCAL_CANDIDATES = (
    "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    "postgresql+asyncpg://root@127.0.0.1:5432/postgres",
)


@dataclass(frozen=True)
class PostgresServer:
    url: str
    #: "env", "docker", "local" or "embedded"
    kind: str


def database_url_for(server_url: str, database: str) -> str:
    """``server_url`` pointing at another database (keeps host, socket and options)."""
    url = make_url(to_async_url(server_url)).set(database=database)
    return url.render_as_string(hide_password=False)


async def _answers(url: str, connect_timeout: float = 2.0) -> bool:
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": connect_timeout})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


async def _admin(server_url: str, *statements: str) -> None:
    engine = create_async_engine(
        to_async_url(server_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` (from ``template``); returns its URL."""
    clause = f' TEMPLATE "{template}"' if template else ""
    run_async(lambda: _admin(server_url, f'CREATE DATABASE "{name}"{clause}'))
    return database_url_for(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    run_async(lambda: _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[PostgresServer]:
    forced = os.environ.get("GENRES_TESTS_POSTGRES", "auto").strip().lower()
    if forced == "embedded":
        with EmbeddedPostgres() as embedded:
            yield PostgresServer(embedded.url, "embedded")
        return
    from_env = os.environ.get("DATABASE_URL", "").strip()
    if from_env:
        yield PostgresServer(to_async_url(from_env), "env")
        return
    if docker_available():
        try:
            from testcontainers.postgres import PostgresContainer

            container = PostgresContainer(POSTGRES_IMAGE, driver="asyncpg").start()
        except Exception as exc:  # fall back rather than fail the run
            warnings.warn(
                f"testcontainers PostgreSQL failed ({exc!r})", FallbackWarning, stacklevel=1
            )
        else:
            try:
                yield PostgresServer(to_async_url(container.get_connection_url()), "docker")
            finally:
                container.stop()
            return
    for candidate in LOCAL_CANDIDATES:
        if run_async(lambda url=candidate: _answers(url)):  # type: ignore[misc]
            yield PostgresServer(candidate, "local")
            return
    with EmbeddedPostgres() as embedded:
        yield PostgresServer(embedded.url, "embedded")


@pytest.fixture(scope="session")
def postgres_server_url(_postgres_server: PostgresServer) -> str:
    """A URL of a server on which the tests may create and drop databases."""
    return _postgres_server.url


@pytest.fixture(scope="session")
def migrated_template(postgres_server_url: str) -> Iterator[str]:
    """Name of a database migrated to head once per session (the template of each test's)."""
    name = f"g_tmpl_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    try:
        run_async(lambda: upgrade(url))
        yield name
    finally:
        drop_database(postgres_server_url, name)


@pytest.fixture
def database_url(postgres_server_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated, empty database for this test (``postgresql+asyncpg://`` URL)."""
    name = f"g_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name, template=migrated_template)
    try:
        yield url
    finally:
        drop_database(postgres_server_url, name)


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"g_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_server_url, name)


@pytest_asyncio.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An ``AsyncEngine`` on this test's database (the service's own ``create_engine``)."""
    engine = create_engine(database_url, pool_size=5)
    try:
        yield engine
    finally:
        await engine.dispose()


__all__ = [
    "PostgresServer",
    "create_database",
    "database_url",
    "database_url_for",
    "drop_database",
    "empty_database_url",
    "engine",
    "migrated_template",
    "postgres_server_url",
]


async def insert_track(
    engine: AsyncEngine,
    track_id: int,
    file_id: str | None = "f",
    *,
    audio_url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """One row of ``tracks`` as the platform writes it: its audio at
    ``https://cdn.test/<id>.mp3`` unless given, ``extra`` ``{}`` unless given."""
    url = audio_url or f"https://cdn.test/{track_id}.mp3"
    await insert_tracks(engine, [(track_id, file_id, url, extra or {})])


async def insert_tracks(
    engine: AsyncEngine, rows: Iterable[tuple[int, str | None, str | None, dict[str, Any]]]
) -> None:
    """Rows of ``tracks``: ``(id, file_id, audio_url, extra)`` each, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tracks (id, file_id, audio_url, extra) "
                "VALUES (:id, :file_id, :url, CAST(:extra AS jsonb))"
            ),
            [{"id": i, "file_id": f, "url": u, "extra": json.dumps(e)} for i, f, u, e in rows],
        )
