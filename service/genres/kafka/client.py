"""The requesting side of request/reply: the contracts' client, configured from the settings.

FastStream lacks a requester on a real Kafka connection; the one other services install
(``genres-contracts[kafka]``, :mod:`genres_contracts.kafka`) is the one the service uses too
(``genres recommend``, the demo, benchmarks and tests), so there is one way to ask.

    async with genres_client(settings) as client:
        reply = await client.recommended_tags(668, limit=5)
"""

from __future__ import annotations

from typing import Any

from genres.config import Settings
from genres.kafka.broker import bootstrap_servers, security_options
from genres_contracts.kafka import GenresClient

__all__ = ["REPLY_FETCH_MAX_WAIT_MS", "genres_client"]

# A fetch against Tansu returns only after the full wait: keep it short for latency.
REPLY_FETCH_MAX_WAIT_MS = 5


def genres_client(settings: Settings, **overrides: Any) -> GenresClient:
    """A client (not started) for the settings' broker, security, prefix and client id."""
    options: dict[str, Any] = {
        "topic_prefix": settings.genres_topic_prefix,
        "client_id": settings.kafka_client_id,
        # Unset: the broker's default, as the service's own topics.
        "replication_factor": settings.kafka_replication_factor,
        "fetch_max_wait_ms": REPLY_FETCH_MAX_WAIT_MS,
        **security_options(settings),
        **overrides,
    }
    return GenresClient(bootstrap_servers(settings), **options)
