"""The service's errors: one root, typed by what the entrypoint must do with them.

    GenresError
    ├── ConfigurationError              bad settings: stop at start with one line
    │   └── ClusterRefused              the Kafka cluster refuses us for good: an ACL, the
    │                                   credentials, TLS, a topic that does not exist
    ├── InvalidMessage                  a record that cannot be parsed or validated: dead-letter
    └── ClassificationError             a classification did not produce predictions
        ├── RetryableClassificationError       may succeed later: retry within the deadline
        │   ├── RateLimited                    HTTP 429 (carries the server's retry hint)
        │   ├── ServiceUnavailable             5xx, connection errors
        │   └── ClassificationTimeout          the deadline passed
        └── PermanentClassificationError       retrying will not help: publish ClassificationFailed
            ├── RequestRejected                other 4xx
            ├── PredictionFailed               the prediction ended `failed`/`canceled`/`aborted`
            ├── MalformedOutput                the output is not what the model promises
            ├── AudioError                     the audio cannot be fetched, is refused or unreadable
            └── NotConfigured                  no classifier backend (CLASSIFIER_BACKEND=none)

Only the roles' entries (``genres.<role>.entry``) map these to ack, retry or dead-letter.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum

from genres_contracts import FailureKind


class GenresError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigurationError(GenresError):
    """The configuration cannot work; the message is one line, for people."""


class Refusal(StrEnum):
    """Why the cluster refuses: what an operator must fix (never retried as transient)."""

    AUTHORIZATION = "authorization"
    """An ACL denies an operation on a topic, a group or the cluster."""
    AUTHENTICATION = "authentication"
    """The credentials (SASL user, password, mechanism) are refused."""
    TLS = "tls"
    """The TLS handshake fails: an unknown CA, a wrong or expired certificate."""
    MISSING_TOPIC = "missing_topic"
    """A topic the service needs does not exist and the service may not create it."""


class ClusterRefused(ConfigurationError):
    """The Kafka cluster refuses the service for a reason retrying cannot fix.

    The message is one line naming the operation and the resource (or the mechanism, or the
    certificate problem); ``refusal`` says which kind, for readiness and metrics."""

    def __init__(self, message: str, *, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal


class InvalidMessage(GenresError):
    """A record that cannot be parsed or validated."""


class ClassificationError(GenresError):
    """A classification did not produce predictions."""

    kind: FailureKind = FailureKind.INTERNAL
    retryable: bool = False
    attempts: int = 1
    """How many attempts the backend made before giving up: Replicate's retry policy
    (``classify/replicate/retries.py``) sets stamina's count of creations on the error it
    gives up with."""

    def __init__(self, message: str, *, kind: FailureKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class RetryableClassificationError(ClassificationError):
    """A transient failure: a later attempt may succeed."""

    retryable = True
    kind = FailureKind.UNAVAILABLE


class RateLimited(RetryableClassificationError):
    """The backend throttled us; ``retry_after`` is its hint in seconds, when it gave one."""

    kind = FailureKind.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(RetryableClassificationError):
    """A 5xx answer or a connection failure."""

    kind = FailureKind.UNAVAILABLE


class ClassificationTimeout(RetryableClassificationError):
    """The classification's deadline passed."""

    kind = FailureKind.TIMEOUT


class PermanentClassificationError(ClassificationError):
    """Retrying will not help."""

    retryable = False
    kind = FailureKind.REJECTED


class RequestRejected(PermanentClassificationError):
    """The backend refused the request (a 4xx other than 429)."""

    kind = FailureKind.REJECTED


class PredictionFailed(PermanentClassificationError):
    """The prediction ended without output (failed, canceled or aborted)."""

    kind = FailureKind.PREDICTION_FAILED


class MalformedOutput(PermanentClassificationError):
    """The backend's output is not what the model promises."""

    kind = FailureKind.MALFORMED_OUTPUT


class AudioError(PermanentClassificationError):
    """The audio cannot be fetched, is refused, too large or unreadable (kind says which)."""

    kind = FailureKind.AUDIO_UNREADABLE


class NotConfigured(PermanentClassificationError):
    """No classifier backend is configured."""

    kind = FailureKind.NOT_CONFIGURED


def causes(error: BaseException) -> Iterator[tuple[BaseException, BaseException | None]]:
    """``error``, its causes and contexts, the members of exception groups and the driver's
    error a SQLAlchemy error wraps (``orig``), each once, nearest first, each with the error it
    was found under (``None`` for ``error`` itself)."""
    seen: set[int] = set()
    todo: list[tuple[BaseException, BaseException | None]] = [(error, None)]
    while todo:
        each, parent = todo.pop(0)
        if id(each) in seen:
            continue
        seen.add(id(each))
        yield each, parent
        linked: list[object] = [getattr(each, "orig", None), each.__cause__, each.__context__]
        if isinstance(each, BaseExceptionGroup):
            linked[:0] = each.exceptions
        todo.extend((e, each) for e in linked if isinstance(e, BaseException))
