"""PostgreSQL TLS: ``?ssl=require`` in DATABASE_URL reaches the driver."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url, text

from genres.database.engine import create_engine


async def test_a_url_requiring_tls_gets_tls_or_a_clear_refusal(postgres_server_url: str) -> None:
    url = make_url(postgres_server_url)
    if url.host is None:
        pytest.skip("the test server listens on a Unix socket, where TLS does not apply")
    engine = create_engine(url.update_query_dict({"ssl": "require"}).render_as_string(False))
    query = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    in_use: bool | None = None
    refusal = ""
    try:
        async with engine.connect() as conn:
            in_use = (await conn.execute(query)).scalar_one()
    except Exception as exc:
        refusal = str(exc).lower()
    finally:
        await engine.dispose()
    # Either the connection is encrypted, or a server without TLS refused it: either way the
    # requirement was passed on, not dropped.
    assert in_use is True or "ssl" in refusal or "tls" in refusal, refusal
