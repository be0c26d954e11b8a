"""Run the Alembic migrations to head, programmatically (no ``alembic.ini`` needed).

Safe to run twice and concurrently: a PostgreSQL advisory lock serialises runners, and the
second one finds the schema at head. The version table is ``genres_alembic_version``, so a
platform database's own Alembic history is left alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from genres.database.engine import CONNECT_TIMEOUT_SECONDS, driver_url

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade",
    "upgrade_sync",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "genres_alembic_version"
# pg_advisory_lock key: a fixed 64-bit number ("genres" + "mig" in ASCII), one per database.
ADVISORY_LOCK_KEY = 0x67656E7265736D67


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    if url is not None:
        # ConfigParser interpolation: a literal "%" must be doubled
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _upgrade(connection: Connection, revision: str) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    return _current(connection)


def _engine(database_url: str) -> AsyncEngine:
    url, tls = driver_url(database_url)
    return create_async_engine(
        url,
        poolclass=NullPool,
        # A server that does not answer fails the command in seconds, not asyncpg's minute.
        connect_args={**tls, "timeout": CONNECT_TIMEOUT_SECONDS},
    )


async def upgrade(database_url: str, revision: str = "head") -> str:
    """Upgrade the database to ``revision`` (head by default); return the revision it is at."""
    engine = _engine(database_url)
    try:
        async with engine.connect() as connection:
            # A session-level lock: it outlives the transactions the migrations commit.
            await connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
            await connection.commit()
            try:
                current = await connection.run_sync(_upgrade, revision)
                await connection.commit()
            finally:
                await connection.rollback()
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                await connection.commit()
    finally:
        await engine.dispose()
    if current is None:
        raise RuntimeError("the migrations left no revision")
    return current


def upgrade_sync(database_url: str, revision: str = "head") -> str:
    """:func:`upgrade` for synchronous callers (must not be called from a running loop)."""
    return asyncio.run(upgrade(database_url, revision))


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or ``None`` when never migrated."""
    engine = _engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await engine.dispose()
