"""The one way to reach PostgreSQL: SQLAlchemy's asyncio engine on asyncpg, with timeouts.

Hot paths (the classifier's ledger, the Replicate pace) use asyncpg directly, on a pool
built from the same URL and timeouts: :func:`connect_pool`.

``DATABASE_URL`` takes libpq's TLS parameters (``sslmode=verify-full&sslrootcert=/ca.pem``,
``sslcert``, ``sslkey``, ...): SQLAlchemy would hand them to ``asyncpg.connect`` as keyword
arguments it does not take, so :func:`driver_url` moves them to asyncpg's ``dsn``, which reads
them as libpq does. asyncpg's own ``ssl=<mode>`` keeps working."""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any
from urllib.parse import urlencode

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from genres.errors import causes

__all__ = [
    "COMMAND_TIMEOUT_SECONDS",
    "CONNECT_TIMEOUT_SECONDS",
    "connect_pool",
    "create_engine",
    "driver_url",
    "first_contact",
    "json_dumps",
    "to_async_url",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
COMMAND_TIMEOUT_SECONDS = 30.0

TLS_PARAMETERS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
    }
)
"""libpq's TLS parameters, as asyncpg reads them from a DSN."""


def to_async_url(url: str) -> str:
    """The same URL with the asyncpg driver (accepts ``postgres://``, ``postgresql://`` and
    ``postgresql+<any driver>://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ValueError("not a PostgreSQL URL")
    return f"postgresql+asyncpg://{rest}"


def driver_url(url: str) -> tuple[URL, dict[str, Any]]:
    """``url`` for asyncpg without libpq's TLS parameters, and the connect arguments that
    carry them (``{"dsn": "postgresql://?sslmode=..."}``; none when there are none)."""
    parsed = make_url(to_async_url(url))
    tls = {key: value for key, value in parsed.query.items() if key in TLS_PARAMETERS}
    if not tls:
        return parsed, {}
    dsn = "postgresql://?" + urlencode(tls, doseq=True)
    return parsed.difference_update_query(tls), {"dsn": dsn}


def json_dumps(value: Any) -> str:
    """Compact JSON for JSONB columns (no spaces; non-ASCII kept as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    statement_cache_size: int = 256,
    pool_timeout: float = 30.0,
    application_name: str = "genres",
    echo: bool = False,
    pre_ping: bool = True,
    autocommit: bool = False,
) -> AsyncEngine:
    """An ``AsyncEngine`` on ``url`` (any PostgreSQL scheme; the asyncpg driver is forced).

    * ``pre_ping``: a connection the server dropped (restart, idle timeout) is replaced
      instead of failing the first query after it. It costs a round trip per checkout, so
      hot paths whose callers retry on connection errors (the classifier) turn it off.
    * ``statement_cache_size``: SQLAlchemy's prepared-statement cache per connection. ``0``
      turns both it and asyncpg's own cache off (for PgBouncer in transaction mode).
    * ``max_overflow`` defaults to ``pool_size``: bursts may double the connections;
      ``pool_size=0`` opens a connection per use (``NullPool``).
    * ``autocommit``: every statement commits on its own (single-statement reads).
    """
    address, tls = driver_url(url)
    connect_args: dict[str, Any] = {
        **tls,
        # A partitioned network must not hang a role until TCP gives up (~15 min): the
        # callers treat timeouts as transient and retry.
        "timeout": CONNECT_TIMEOUT_SECONDS,
        "command_timeout": COMMAND_TIMEOUT_SECONDS,
        "prepared_statement_cache_size": statement_cache_size,
        "server_settings": {"application_name": application_name},
    }
    if statement_cache_size == 0:
        connect_args["statement_cache_size"] = 0
    options: dict[str, Any] = {
        "json_serializer": json_dumps,
        "connect_args": connect_args,
        "echo": echo,
    }
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    if pool_size == 0:
        return create_async_engine(address, poolclass=NullPool, **options)
    return create_async_engine(
        address,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        **options,
    )


async def connect_pool(database_url: str, *, size: int) -> asyncpg.Pool:
    """An asyncpg pool on ``DATABASE_URL`` (any PostgreSQL scheme; SQLAlchemy reads the URL)."""
    url, tls = driver_url(database_url)
    engine = create_async_engine(url)
    try:
        _, options = engine.dialect.create_connect_args(url)
    finally:
        await engine.dispose()
    options.update(tls)
    options.pop("prepared_statement_cache_size", None)
    options.setdefault("timeout", CONNECT_TIMEOUT_SECONDS)
    options.setdefault("command_timeout", COMMAND_TIMEOUT_SECONDS)
    return await asyncpg.create_pool(min_size=1, max_size=size, reset=_keep, **options)


async def _keep(connection: asyncpg.Connection) -> None:
    """No reset on release: every statement stands alone and leaves no session state, and
    asyncpg's default reset is a round trip per statement."""


#: Refusals a later attempt cannot meet differently: the server's certificate, the login, the
#: database's name, a URL the driver cannot use.
PERMANENT = (
    ssl.SSLCertVerificationError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.ClientConfigurationError,
)


async def first_contact(engine: AsyncEngine) -> None:
    """Connect once at start. A refusal no retry cures (``PERMANENT``) propagates, so the
    process stops with its one line (``genres.cli.failures``) instead of every role retrying it as
    an outage; a server that does not answer is only logged: the roles wait for it."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        if any(isinstance(error, PERMANENT) for error, _ in causes(exc)):
            raise
        log.warning("PostgreSQL does not answer at start; the roles retry: %s", exc)
