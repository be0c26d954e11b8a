"""The errors of the genres client: one root, one type per thing a caller does differently."""

from __future__ import annotations

from genres_contracts.requests import RecommendedTags


class GenresClientError(Exception):
    """Root of every error :class:`~genres_contracts.kafka.GenresClient` raises on purpose.

    ::

        GenresClientError
        ├── Unavailable          the broker cannot be reached or refuses the client, or the
        │   │                    service answered `unavailable`: try again later
        │   └── Refused          an ACL denies the client an operation: retrying cannot help
        ├── RequestTimedOut      no reply within the timeout (no responder running, or slow)
        ├── InvalidRequest       the request breaks the contract: refused before sending
        │                        (arguments out of range) or answered `invalid_request`
        ├── TrackNotFound        the service answered `not_found`: no such track
        ├── ServiceError         the service answered `internal` or an unreadable reply
        └── ClientClosed         the client is not started, or closed while a request waited

    An answer with ``available: false`` (no classifier configured) or ``pending: true`` is
    not an error: it is a normal :class:`~genres_contracts.RecommendedTags`.
    """

    reply: RecommendedTags | None = None
    """The service's reply, for errors the service answered with."""

    def __init__(self, message: str, *, reply: RecommendedTags | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class Unavailable(GenresClientError):
    """The broker cannot be reached or refuses the client, or the service said `unavailable`."""


class Refused(Unavailable):
    """The cluster's ACLs deny the client an operation on a resource: a setting to fix (the
    principal's ACLs), not an outage. The message names both: ``Kafka denies CREATE on topic
    genres.replies.host-1-ab12 (TOPIC_AUTHORIZATION_FAILED)``."""

    def __init__(self, operation: str, resource: str, code: str) -> None:
        super().__init__(f"Kafka denies {operation} on {resource} ({code})")
        self.operation = operation
        self.resource = resource


class RequestTimedOut(GenresClientError):
    """No reply came within the request's timeout."""

    def __init__(self, topic: str, correlation_id: str, timeout: float) -> None:
        super().__init__(f"no reply to request {correlation_id} on {topic} within {timeout:g} s")
        self.topic = topic
        self.correlation_id = correlation_id
        self.timeout = timeout


class InvalidRequest(GenresClientError):
    """The request breaks the contract (``reply`` is set when the service said so)."""


class TrackNotFound(GenresClientError):
    """The service has no track with this id."""

    def __init__(self, track_id: int | None, message: str, *, reply: RecommendedTags) -> None:
        super().__init__(message, reply=reply)
        self.track_id = track_id


class ServiceError(GenresClientError):
    """The service could not answer (`internal`), or its reply cannot be read."""


class ClientClosed(GenresClientError):
    """The client is not started, or was closed while the request waited."""
