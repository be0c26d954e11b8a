"""A Kafka client for services that ask genres for tags: ``pip install genres-contracts[kafka]``.

    from genres_contracts.kafka import GenresClient, TrackNotFound

    async with GenresClient("localhost:9092") as client:
        tags = await client.recommended_tags(668, limit=5, wait_ms=0, timeout=5.0)

It needs aiokafka and pydantic only (never the service). Errors: :class:`GenresClientError`.
"""

try:
    import aiokafka  # noqa: F401
except ImportError as exc:  # pragma: no cover - checked in a venv without the extra
    raise ImportError(
        "genres_contracts.kafka needs aiokafka: pip install 'genres-contracts[kafka]'"
    ) from exc

from genres_contracts.kafka._client import DEFAULT_FETCH_MAX_WAIT_MS, GenresClient
from genres_contracts.kafka._errors import (
    ClientClosed,
    GenresClientError,
    InvalidRequest,
    Refused,
    RequestTimedOut,
    ServiceError,
    TrackNotFound,
    Unavailable,
)
from genres_contracts.kafka._replies import REPLY_TOPIC_STEM, read_reply

__all__ = [
    "DEFAULT_FETCH_MAX_WAIT_MS",
    "REPLY_TOPIC_STEM",
    "ClientClosed",
    "GenresClient",
    "GenresClientError",
    "InvalidRequest",
    "Refused",
    "RequestTimedOut",
    "ServiceError",
    "TrackNotFound",
    "Unavailable",
    "read_reply",
]
