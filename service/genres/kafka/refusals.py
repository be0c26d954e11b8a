"""Permanent refusals from the Kafka cluster: recognised, named in one line, never retried.

aiokafka raises an ACL denial, a refused login or a failed TLS handshake like any other
broker error, and retries or merely logs many of them; to an operator they are one thing to fix.
:func:`refused` turns such an error (anywhere in its chain) into
:class:`~genres.errors.ClusterRefused`, whose one line names the operation and the resource (or
the mechanism and user, or the certificate problem). :class:`Refusals` is where a running
process collects them: the first one logs its ERROR line, turns readiness and stops the process.

aiokafka's bootstrap logs a failed login or handshake and then raises a bare
``KafkaConnectionError`` ("Unable to bootstrap"): the cause is gone. :func:`probe` connects to
each bootstrap server once, as the clients would, so that the cause can be named at start.

Over 300 lines on purpose: recognising a refusal in aiokafka's many shapes of it, probing for
one and collecting them share one vocabulary; split, the parts would only import each other.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Collection, Iterable
from types import TracebackType

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)

from genres.config import Settings
from genres.errors import ClusterRefused, Refusal, causes

log = logging.getLogger(__name__)

# Kafka's error codes for the same refusals, as a metadata or admin response carries them.
TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailedError.errno
UNKNOWN_TOPIC_OR_PARTITION = UnknownTopicOrPartitionError.errno

# The TLS alerts a broker sends when it refuses the client's certificate (mTLS).
_CLIENT_CERTIFICATE_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
)


def refused(
    error: BaseException,
    *,
    operation: str | None = None,
    settings: Settings | None = None,
    topics: Collection[str] = (),
    missing: bool = False,
) -> ClusterRefused | None:
    """The permanent refusal ``error`` is or wraps, or None when retrying may help.

    ``operation``: the ACL operation the caller attempted (``READ``, ``WRITE``, ``DESCRIBE``),
    when it knows it; the errors do not say. ``topics``: the topics it was on, named when the
    error names none. ``missing``: those topics must exist, so an
    ``UnknownTopicOrPartitionError`` is a missing topic rather than one being created.
    """
    for each, parent in causes(error):
        if isinstance(each, ClusterRefused):
            return each
        if isinstance(each, ssl.SSLError) and not _kafkas(each, parent):
            continue  # another client's handshake (PostgreSQL's, Replicate's)
        each = _unwrapped(each, topics)
        found = _one(each, operation=operation, settings=settings, topics=topics, missing=missing)
        if found is not None:
            found.__cause__ = each
            return found
    return None


def is_refusal(error: BaseException) -> bool:
    return refused(error) is not None


def _one(
    error: BaseException,
    *,
    operation: str | None,
    settings: Settings | None,
    topics: Collection[str],
    missing: bool,
) -> ClusterRefused | None:
    doing = f"{operation} on " if operation else "access to "
    if isinstance(error, TopicAuthorizationFailedError):
        named = _names(error) if error.args else ", ".join(sorted(topics)) or _names(error)
        return not_authorized(f"{doing}topic {named}", error)
    if isinstance(error, GroupAuthorizationFailedError):
        # Joining, fetching offsets and committing all need READ on the group.
        return not_authorized(f"{operation or 'READ'} on group {_names(error)}", error)
    if isinstance(error, TransactionalIdAuthorizationFailed):
        return not_authorized(f"{operation or 'WRITE'} on transactional id {_names(error)}", error)
    if isinstance(error, ClusterAuthorizationFailedError):
        # A producer's cluster-wide need is its idempotence (InitProducerId).
        op = "IDEMPOTENT_WRITE" if operation == "WRITE" else operation
        return not_authorized(f"{op} on the cluster" if op else "access to the cluster", error)
    if isinstance(error, SaslAuthenticationFailed | UnsupportedSaslMechanismError):
        return ClusterRefused(
            f"Kafka authentication failed: {_login(settings)}: {_detail(error, settings)}"
            " (check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)",
            refusal=Refusal.AUTHENTICATION,
        )
    if isinstance(error, ssl.SSLError):
        return ClusterRefused(
            f"Kafka TLS handshake failed: {tls_problem(error, settings)}", refusal=Refusal.TLS
        )
    if isinstance(error, UnknownTopicOrPartitionError) and missing and topics:
        return missing_topics(topics)
    return None


def not_authorized(what: str, error: BaseException | None = None) -> ClusterRefused:
    """``what``: the operation and the resource, e.g. ``READ on topic track.uploaded``."""
    code = getattr(error, "message", None) if isinstance(error, KafkaError) else None
    return ClusterRefused(
        f"Kafka denies {what}"
        + (f" ({code})" if code else "")
        + ": an ACL for the service's principal is missing (`genres acls` lists them)",
        refusal=Refusal.AUTHORIZATION,
    )


def missing_topics(names: Iterable[str]) -> ClusterRefused:
    listed = ", ".join(sorted(set(names)))
    return ClusterRefused(
        f"Kafka topics missing: {listed} (UNKNOWN_TOPIC_OR_PARTITION): create them, or let the"
        " service create them (KAFKA_CREATE_TOPICS)",
        refusal=Refusal.MISSING_TOPIC,
    )


def tls_problem(error: ssl.SSLError, settings: Settings | None = None) -> str:
    """What went wrong in the handshake, and which setting to look at."""
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = f"certificate verify failed: {error.verify_message}"
        cafile = settings.kafka_ssl_cafile if settings is not None else None
        where = (
            f"KAFKA_SSL_CAFILE={cafile}" if cafile else "KAFKA_SSL_CAFILE (unset: the system CAs)"
        )
        return f"{detail}: the broker's certificate is not trusted (check {where})"
    reason = (getattr(error, "reason", None) or str(error)).upper()
    detail = _ssl_text(error)
    if any(alert in reason for alert in _CLIENT_CERTIFICATE_ALERTS):
        return (
            f"{detail}: the broker refuses the client certificate"
            " (check KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE)"
        )
    return f"{detail} (check KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE)"


async def probe(settings: Settings, *, timeout_ms: int = 10_000) -> None:
    """Connect once to each bootstrap server until one accepts; raise ``ClusterRefused`` when
    one refuses the login or the TLS handshake. Unreachable servers are left to the clients
    (they retry them and say so)."""
    # Imported here: genres.kafka.broker names its own refusals with this module.
    from genres.kafka.broker import bootstrap_servers, security_options

    security = security_options(settings)
    for server in bootstrap_servers(settings):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            continue  # the clients say what is wrong with it
        try:
            conn = await create_conn(
                host.strip("[]"), int(port), request_timeout_ms=timeout_ms, **security
            )
        except (TimeoutError, OSError, KafkaError) as exc:
            found = refused(exc, settings=settings)
            if found is not None:
                raise found from exc
            continue
        conn.close()
        return


class Refusals:
    """A running process's refusals: the first one is logged as ERROR, makes readiness fail
    with its line, and is what :meth:`wait` returns (the process stops on it).

    Every error a role meets passes :meth:`note` (through the stall watchdog's listeners);
    those that are not refusals are ignored here.
    """

    def __init__(self) -> None:
        self.first: ClusterRefused | None = None
        self._event = asyncio.Event()

    def note(
        self,
        error: BaseException | str,
        *,
        role: str | None = None,
        operation: str | None = None,
        topics: Collection[str] = (),
    ) -> ClusterRefused | None:
        """``error``'s refusal, if it is one; the first one is logged and kept."""
        if isinstance(error, str):
            return None
        found = refused(error, operation=operation, topics=topics)
        if found is not None and self.first is None:
            self.first = found
            log.error(str(found), extra={"refusal": found.refusal.value, "role": role})
            self._event.set()
        return found

    async def wait(self) -> ClusterRefused:
        await self._event.wait()
        assert self.first is not None
        return self.first

    async def check(self) -> None:
        """The readiness check: raises the refusal once there is one."""
        if self.first is not None:
            raise self.first


class Intercepted(logging.Filter):
    """Takes refusals out of a library's log, on its logger: FastStream logs a subscriber's
    fetch errors at ERROR and tries again every 5 s. Each is noted (the process's one line
    comes from :class:`Refusals`) and dropped; every other record passes."""

    def __init__(self, refusals: Refusals, *, operation: str | None = None) -> None:
        super().__init__()
        self._refusals = refusals
        self._operation = operation

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        topics = subscribed_topics(record.exc_info[2] if record.exc_info else None)
        found = self._refusals.note(error, operation=self._operation, topics=topics)
        return found is None


class Echoes(logging.Filter):
    """After the first refusal, the Kafka client's own ERROR lines repeat it as the roles stop
    (a commit on the way out denied again): WARNING lines, so that the process's one ERROR line
    is the refusal's. A handler's filter: it sees every logger's records."""

    def __init__(self, refusals: Refusals) -> None:
        super().__init__()
        self._refusals = refusals

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            self._refusals.first is not None
            and record.levelno >= logging.ERROR
            and any(record.name == name or record.name.startswith(f"{name}.") for name in _CLIENTS)
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


#: The Kafka client's loggers (FastStream's as the service's broker names it).
_CLIENTS = ("aiokafka", "kafka", "faststream", "genres.faststream")


_WRAPPED: dict[str, type[KafkaError]] = {
    kind.__name__: kind
    for kind in (
        TopicAuthorizationFailedError,
        GroupAuthorizationFailedError,
        ClusterAuthorizationFailedError,
        TransactionalIdAuthorizationFailed,
    )
}


def _unwrapped(error: BaseException, topics: Collection[str]) -> BaseException:
    """aiokafka's group coordinator raises some broker errors as a plain ``KafkaError`` whose
    text is the original's ``repr`` (an OffsetFetch denied for a topic:
    ``KafkaError("TopicAuthorizationFailedError()")``): the original, rebuilt."""
    if type(error) is not KafkaError or not error.args:
        return error
    text = str(error.args[0])
    kind = _WRAPPED.get(text.split("(", 1)[0])
    if kind is None:
        return error
    rebuilt: BaseException = (
        kind(set(topics)) if kind is TopicAuthorizationFailedError and topics else kind()
    )
    rebuilt.__cause__ = error
    return rebuilt


def subscribed_topics(trace: TracebackType | None) -> list[str]:
    """The topics of the FastStream subscriber whose consume loop is in ``trace``, if any."""
    while trace is not None:
        owner = trace.tb_frame.f_locals.get("self")
        names = getattr(owner, "topic_names_for_subscribe", None)
        if isinstance(names, list) and names:
            return [str(name) for name in names]
        trace = trace.tb_next
    return []


def _names(error: BaseException) -> str:
    """The resource an aiokafka error names: a topic, a set of topics, a group id."""
    if not error.args:
        return "(not named by the broker)"
    named = error.args[0]
    if isinstance(named, set | frozenset | list | tuple):
        return ", ".join(sorted(str(each) for each in named))
    return str(named)


def _login(settings: Settings | None) -> str:
    if settings is None:
        return "SASL"
    user = settings.kafka_sasl_username or "(no KAFKA_SASL_USERNAME)"
    return f"SASL {settings.kafka_sasl_mechanism or 'PLAIN'} as user {user}"


def _detail(error: BaseException, settings: Settings | None) -> str:
    # The broker's own message (it never contains the password), without aiokafka's
    # "[Error 58] SaslAuthenticationFailed: " prefix. A refused handshake carries the
    # connection object instead of a message.
    text = " ".join(" ".join(str(a) for a in error.args if isinstance(a, str)).split())
    message = getattr(error, "message", type(error).__name__)
    if not text and isinstance(error, UnsupportedSaslMechanismError):
        mechanism = (settings.kafka_sasl_mechanism if settings else None) or "this mechanism"
        text = f"the broker does not offer {mechanism} on this listener"
    return f"{message}: {text}" if text else str(message)


def _ssl_text(error: ssl.SSLError) -> str:
    # "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)"
    text = error.strerror or str(error)
    text = text.split("] ", 1)[-1]
    return text.rsplit(" (_ssl.c", 1)[0]


def _kafkas(error: BaseException, parent: BaseException | None) -> bool:
    """Whether ``error`` was met by the Kafka client: raised in its frames, or the cause of
    one of its errors (a closed connection keeps the handshake's error as its cause)."""
    if isinstance(parent, KafkaError):
        return True
    trace = error.__traceback__
    while trace is not None:
        if "/aiokafka/" in trace.tb_frame.f_code.co_filename:
            return True
        trace = trace.tb_next
    return False
