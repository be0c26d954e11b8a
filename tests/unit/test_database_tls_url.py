"""libpq's TLS parameters in ``DATABASE_URL`` reach asyncpg (SQLAlchemy alone would pass them
as keyword arguments ``asyncpg.connect`` does not take)."""

from __future__ import annotations

from genres.database.engine import driver_url


def test_libpq_tls_parameters_in_database_url_reach_asyncpg_as_its_dsn() -> None:
    url, arguments = driver_url(
        "postgresql://app:pw@db.test:5433/genres?sslmode=verify-full&sslrootcert=/ca/root.pem"
        "&application_name=x"
    )
    assert url.render_as_string(hide_password=False) == (
        "postgresql+asyncpg://app:pw@db.test:5433/genres?application_name=x"
    )
    assert arguments == {"dsn": "postgresql://?sslmode=verify-full&sslrootcert=%2Fca%2Froot.pem"}


def test_a_url_without_libpq_tls_parameters_is_left_as_it_is() -> None:
    url, arguments = driver_url("postgres://app@db.test/genres?ssl=require")
    assert str(url) == "postgresql+asyncpg://app@db.test/genres?ssl=require"
    assert arguments == {}
