"""PostgreSQL TLS for real: a server that takes TLS only, its certificate from a private CA.

``DATABASE_URL`` with ``sslmode=verify-full&sslrootcert=<ca>`` reaches it through each way the
service connects (SQLAlchemy's engine, the asyncpg pool of the hot paths, the migrations); a
certificate from another CA stops a command with one line and exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from genres.database.engine import connect_pool, create_engine
from genres.database.migrate import head_revision, upgrade
from tests.support.ci import missing
from tests.support.tls_postgres import TlsPostgres, find_tls_postgres, tls_postgres

ENCRYPTED = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def server() -> Iterator[TlsPostgres]:
    bin_dir = find_tls_postgres()
    if bin_dir is None:
        missing("no PostgreSQL built with OpenSSL (Debian's postgresql package has one)")
    with tls_postgres(bin_dir) as running:
        yield running


async def encrypted(url: str) -> bool:
    engine = create_engine(url, pool_size=0)
    try:
        async with engine.connect() as connection:
            return bool((await connection.execute(text(ENCRYPTED))).scalar_one())
    finally:
        await engine.dispose()


async def test_the_server_takes_no_plain_connection(server: TlsPostgres) -> None:
    with pytest.raises(Exception, match="no encryption"):
        await encrypted(server.url(ssl="disable"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_engine_connects_with_the_certificate_verified(
    server: TlsPostgres, host: str
) -> None:
    url = server.verified_url().replace("@127.0.0.1:", f"@{host}:")
    assert await encrypted(url)


async def test_the_hot_paths_pool_connects_with_the_certificate_verified(
    server: TlsPostgres,
) -> None:
    pool = await connect_pool(server.verified_url(), size=1)
    try:
        assert await pool.fetchval(ENCRYPTED) is True
    finally:
        await pool.close()


async def test_the_migrations_run_with_the_certificate_verified(server: TlsPostgres) -> None:
    assert await upgrade(server.verified_url()) == head_revision()


async def test_asyncpgs_own_ssl_mode_still_reaches_the_driver(server: TlsPostgres) -> None:
    assert await encrypted(server.url(ssl="require"))


def run_genres(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": database_url}
    environment.pop("GENRES_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "genres.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_certificate_from_another_ca_is_refused_in_one_line(server: TlsPostgres) -> None:
    url = server.url(sslmode="verify-full", sslrootcert=str(server.other_ca))
    done = run_genres("migrate", database_url=url)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: PostgreSQL at 127.0.0.1:{server.port}: its TLS certificate failed verification "
        "(unable to get local issuer certificate): check DATABASE_URL's sslrootcert and host\n"
    )


def test_a_root_certificate_that_is_not_there_is_named(server: TlsPostgres) -> None:
    url = server.url(sslmode="verify-full", sslrootcert="/nonexistent/ca.pem")
    done = run_genres("migrate", database_url=url)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: DATABASE_URL: sslrootcert /nonexistent/ca.pem: no such file\n"


@pytest.mark.parametrize("role", ["projector", "responder"])
def test_a_role_that_connects_lazily_still_stops_at_start_on_a_certificate_from_another_ca(
    server: TlsPostgres, kafka_bootstrap: str, topic_prefix: str, role: str
) -> None:
    # The projector and the responder open connections only when work arrives: without the
    # first contact at start they would retry the refused certificate as an outage forever.
    url = server.url(sslmode="verify-full", sslrootcert=str(server.other_ca))
    environment = {
        **os.environ,
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "GENRES_TOPIC_PREFIX": topic_prefix,
        "HEALTH_PORT": "0",
    }
    environment.pop("GENRES_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "genres.cli", "run", role],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: PostgreSQL at 127.0.0.1:{server.port}: its TLS certificate failed verification "
        "(unable to get local issuer certificate): check DATABASE_URL's sslrootcert and host"
    )
