"""A login role that owns nothing and holds given privileges, as an operator makes one.

The test's database was migrated by the server's superuser (the tables' owner); the role gets
``genres.database.grants.statements``, applied by that owner, and its URL is the test's URL
with the role as user (and a password, for servers that ask for one).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from genres.database.engine import to_async_url
from genres.database.grants import Grant, statements


async def as_owner(database_url: str, *sql: str) -> None:
    """Run ``sql`` on the test's database as its owner (each statement commits)."""
    engine = create_async_engine(
        to_async_url(database_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            for statement in sql:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def role_holding(database_url: str, grants: Iterable[Grant]) -> AsyncIterator[str]:
    """The URL of a new login role holding ``grants`` on the database; dropped on exit."""
    name = f"g_role_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    await as_owner(
        database_url,
        f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
        *statements(name, grants),
    )
    url = make_url(to_async_url(database_url)).set(username=name, password=password)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        # A role cannot be dropped while it holds privileges: DROP OWNED revokes them.
        await as_owner(database_url, f"DROP OWNED BY {name}", f"DROP ROLE {name}")
