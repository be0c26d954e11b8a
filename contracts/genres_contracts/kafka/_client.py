"""The requesting side of the genres request/reply, on aiokafka.

Over 300 lines because it is one class whose lifecycle, reply reader and requests share one
state (the pending futures, the reply topic, the clients); reading a reply is in ``_replies``.

FastStream 0.7's ``KafkaBroker.request`` works only inside its test broker, so this client
does what a requester needs on a real connection:

* one reply topic per client (``<prefix>genres.replies.<host>-<pid>-<random>``, one
  partition), created on start and deleted on close (best effort: a leftover is harmless);
* an aiokafka consumer assigned to it by hand (no consumer group: nothing to join, commit or
  rebalance), positioned at its end before the first request, so no reply can be missed;
* each request carries the headers ``reply_to`` and ``correlation_id`` (a uuid4 hex), the
  convention the responder follows; the reply with the same ``correlation_id`` resolves that
  request's future, so any number of concurrent requests share the topic. Replies nobody
  waits for (late, or for another client) are dropped.

Every wait is bounded: starting (``start_timeout``), each request (``timeout``), closing
(``close_timeout``). An operation the cluster's ACLs deny raises :class:`Refused` (creating,
reading the reply topic, publishing) and is never retried; a denied deletion of the reply topic
is kept in :attr:`GenresClient.refusal` (closing never raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from pydantic import ValidationError

from genres_contracts import topics
from genres_contracts.kafka._errors import (
    ClientClosed,
    InvalidRequest,
    Refused,
    RequestTimedOut,
    Unavailable,
)
from genres_contracts.kafka._replies import (
    one_line,
    read_reply,
    reply_topic_name,
)
from genres_contracts.requests import RecommendedTags, RecommendedTagsRequest

__all__ = ["DEFAULT_FETCH_MAX_WAIT_MS", "GenresClient"]

log = logging.getLogger("genres_contracts.kafka")

# Kafka answers a fetch as soon as a record arrives, so a long wait costs nothing there; some
# Kafka-compatible brokers (Tansu) hold every fetch for the full wait, which then adds to each
# reply's latency. Short by default; raise it on Kafka to save idle fetches.
DEFAULT_FETCH_MAX_WAIT_MS: Final = 10
_JSON: Final = ("content-type", b"application/json")
_DENIED: Final = TopicAuthorizationFailedError.errno

State = Literal["new", "starting", "started", "closed"]


class GenresClient:
    """Asks the genres service for recommended tags over Kafka.

    ::

        async with GenresClient("localhost:9092") as client:
            tags = await client.recommended_tags(668, limit=5)

    ``bootstrap_servers`` and the security options are aiokafka's (``security_protocol``
    ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``; ``ssl_context``;
    ``sasl_mechanism`` ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` with
    ``sasl_plain_username`` and ``sasl_plain_password``). ``topic_prefix`` goes before every
    topic name, as the service's ``GENRES_TOPIC_PREFIX``. ``replication_factor`` is the reply
    topic's (by default the broker's ``default.replication.factor``). ``request_timeout`` is
    the default wait for a reply (``recommended_tags`` adds the request's ``wait_ms`` to it).
    One client serves any number of concurrent requests; use one per process.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        *,
        topic_prefix: str = "",
        client_id: str = "genres-client",
        security_protocol: str = "PLAINTEXT",
        ssl_context: ssl.SSLContext | None = None,
        sasl_mechanism: str = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        replication_factor: int | None = None,
        request_timeout: float = 5.0,
        start_timeout: float = 10.0,
        close_timeout: float = 5.0,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
    ) -> None:
        for name, value in (
            ("request_timeout", request_timeout),
            ("start_timeout", start_timeout),
            ("close_timeout", close_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be above 0, not {value!r}")
        if replication_factor is not None and replication_factor < 1:
            raise ValueError(f"replication_factor must be at least 1, not {replication_factor}")
        self._servers = (
            bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
        )
        if ssl_context is None and security_protocol.upper() in ("SSL", "SASL_SSL"):
            ssl_context = ssl.create_default_context()  # the system's CAs
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "security_protocol": security_protocol,
            "ssl_context": ssl_context,
            "sasl_mechanism": sasl_mechanism,
            "sasl_plain_username": sasl_plain_username,
            "sasl_plain_password": sasl_plain_password,
        }
        self._prefix = topic_prefix
        self._replication_factor = replication_factor
        self._request_timeout = request_timeout
        self._start_timeout = start_timeout
        self._close_timeout = close_timeout
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self.reply_topic: Final = reply_topic_name(topic_prefix)
        """This client's reply topic."""
        self._state: State = "new"
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._admin_started = False
        self._topic_created = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: asyncio.Task[None] | None = None
        self.refusal: Refused | None = None
        """The first operation the cluster's ACLs denied this client, closing included (a
        reply topic it may not delete is left behind): None while none was."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the reply topic, read it from its end, start the producer.

        Raises :class:`Unavailable` when the broker does not answer within ``start_timeout``
        or refuses the client (authentication, authorisation, topic creation).
        """
        if self._state != "new":
            raise RuntimeError("a GenresClient starts once")
        self._state = "starting"
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._connect()
        except TimeoutError:
            await self._disconnect()
            raise Unavailable(
                f"the Kafka broker at {self._servers} did not answer within "
                f"{self._start_timeout:g} s"
            ) from None
        except KafkaConnectionError as exc:
            await self._disconnect()
            raise Unavailable(f"cannot reach the Kafka broker at {self._servers}") from exc
        except (KafkaError, OSError) as exc:
            await self._disconnect()
            raise Unavailable(
                f"cannot use the Kafka broker at {self._servers}: {_describe(exc)}"
            ) from exc
        except BaseException:
            await self._disconnect()
            raise
        self._state = "started"

    async def close(self) -> None:
        """Fail the requests still waiting (:class:`ClientClosed`), stop reading and
        producing, delete the reply topic. Bounded by ``close_timeout``; never raises."""
        if self._state == "closed":
            return
        await self._disconnect()

    @property
    def pending(self) -> int:
        """Requests waiting for a reply."""
        return len(self._pending)

    async def _connect(self) -> None:
        self._admin = AIOKafkaAdminClient(**self._options)
        await self._admin.start()
        self._admin_started = True
        await self._create_reply_topic(self._admin)
        self._consumer = AIOKafkaConsumer(
            **self._options,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await self._consumer.start()
        partition = TopicPartition(self.reply_topic, 0)
        self._consumer.assign([partition])
        await self._consumer.seek_to_end(partition)
        # Resolve the position now: a lazy reset later could skip a reply that came meanwhile.
        await self._consumer.position(partition)
        # A lost request costs a timeout, never a wrong answer: the leader's ack is enough.
        self._producer = AIOKafkaProducer(**self._options, acks=1, linger_ms=0)
        await self._producer.start()
        self._reader = asyncio.create_task(self._read(self._consumer), name="genres-client-replies")

    async def _create_reply_topic(self, admin: AIOKafkaAdminClient) -> None:
        # -1: the broker's default (KIP-464). aiokafka's NewTopic refuses -1 without a replica
        # assignment (and a factor with one); an empty one passes its check and sends none.
        replication = self._replication_factor or -1
        topic = NewTopic(
            self.reply_topic,
            num_partitions=1,
            replication_factor=replication,
            replica_assignments={} if replication == -1 else None,
        )
        response = await admin.create_topics([topic])
        for topic_error in response.topic_errors:
            if topic_error[1] == _DENIED:
                raise self._refused("CREATE", self.reply_topic)
            error = for_code(topic_error[1])
            if topic_error[1] and error is not TopicAlreadyExistsError:
                detail = topic_error[2] if len(topic_error) > 2 and topic_error[2] else ""
                raise error(f"creating {self.reply_topic}: {detail}".rstrip(": "))
        self._topic_created = True

    async def _disconnect(self) -> None:
        """Release everything that was started, each step bounded; logs what fails."""
        self._state = "closed"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientClosed("the client closed while the request waited"))
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        try:
            async with asyncio.timeout(self._close_timeout):
                # aiokafka marks a client closed before it waits, so a stop cut short by the
                # timeout still leaves no "Unclosed" warning behind.
                await asyncio.gather(
                    *(_quietly(client.stop()) for client in (consumer, producer) if client),
                )
                if admin is not None and self._topic_created:
                    await _quietly(self._delete_reply_topic(admin))
        except TimeoutError:
            log.warning("closing the genres client took over %g s", self._close_timeout)
        finally:
            if admin is not None and self._admin_started:
                await _quietly(admin.close())

    async def _delete_reply_topic(self, admin: AIOKafkaAdminClient) -> None:
        response = await admin.delete_topics([self.reply_topic])
        if any(code == _DENIED for _topic, code in response.topic_error_codes):
            refusal = self._refused("DELETE", self.reply_topic)
            log.warning("%s: the reply topic is left behind", refusal)

    def _refused(self, operation: str, topic: str) -> Refused:
        """The refusal of ``operation`` on ``topic``, kept as :attr:`refusal` if the first."""
        refusal = Refused(operation, f"topic {topic}", "TOPIC_AUTHORIZATION_FAILED")
        if self.refusal is None:
            self.refusal = refusal
        return refusal

    # -- replies -----------------------------------------------------------------------------

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except TopicAuthorizationFailedError:
                # Denied for good: every request waiting, and every one to come, fails on it.
                refusal = self._refused("READ", self.reply_topic)
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(refusal)
                return
            except Exception as exc:  # the broker may come back: keep reading, say so
                log.warning("reading replies failed; retrying: %s", _describe(exc))
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    self._resolve(record.headers or (), record.value)

    def _resolve(self, headers: Iterable[tuple[str, bytes]], value: bytes | None) -> None:
        correlation_id = next((v for k, v in headers if k == topics.CORRELATION_ID_HEADER), None)
        future = self._pending.get(correlation_id) if correlation_id is not None else None
        if future is None or future.done():
            log.debug("dropped a reply nobody waits for (correlation id %r)", correlation_id)
            return
        future.set_result(value or b"")

    # -- requests ----------------------------------------------------------------------------

    async def recommended_tags(
        self,
        track_id: int,
        *,
        limit: int = 5,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> RecommendedTags:
        """The service's recommended tags for ``track_id``: at most ``limit`` (1..20).

        When the track has no predictions yet, the service requests a classification and
        answers ``pending: true``, at once or, with ``wait_ms`` (0..30000), as soon as the
        classification ends or the wait is over. ``available: false`` means the service has
        no classifier. ``timeout`` (seconds) bounds publishing and waiting; by default
        ``request_timeout`` plus ``wait_ms``.

        Raises :class:`InvalidRequest` (before sending anything when the arguments are out
        of range), :class:`TrackNotFound`, :class:`RequestTimedOut`, :class:`Unavailable`,
        :class:`ServiceError` or :class:`ClientClosed`.
        """
        try:
            request = RecommendedTagsRequest(track_id=track_id, limit=limit, wait_ms=wait_ms)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid request: {one_line(exc)}") from None
        value = await self.request(
            topics.RECOMMENDED_TAGS,
            request.model_dump_json().encode(),
            key=str(track_id).encode(),
            timeout=self._request_timeout + wait_ms / 1000 if timeout is None else timeout,
        )
        return read_reply(value)

    async def request(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        timeout: float | None = None,
    ) -> bytes:
        """Publish ``value`` to ``topic`` (the prefix is added) and return the reply's value.

        The raw request/reply under :meth:`recommended_tags`, for requests its arguments
        cannot express; :func:`read_reply` reads a reply to ``track.recommended_tags``.
        ``timeout`` (seconds, by default ``request_timeout``) bounds publishing and waiting.
        """
        if self._state != "started":
            raise ClientClosed(
                "the client is not started" if self._state == "new" else "the client is closed"
            )
        if self.refusal is not None:
            raise self.refusal
        limit = self._request_timeout if timeout is None else timeout
        if not limit > 0:
            raise ValueError(f"timeout must be above 0, not {limit!r}")
        assert self._producer is not None
        name = f"{self._prefix}{topic}"
        correlation_id = uuid.uuid4().hex
        token = correlation_id.encode()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            async with asyncio.timeout(limit):
                await self._producer.send_and_wait(
                    name,
                    value=value,
                    key=key,
                    headers=[
                        _JSON,
                        (topics.REPLY_TO_HEADER, self.reply_topic.encode()),
                        (topics.CORRELATION_ID_HEADER, token),
                        *headers,
                    ],
                )
                return await future
        except TimeoutError:
            raise RequestTimedOut(name, correlation_id, limit) from None
        except TopicAuthorizationFailedError as exc:
            raise self._refused("WRITE", name) from exc
        except KafkaError as exc:
            raise Unavailable(f"cannot publish the request to {name}: {_describe(exc)}") from exc
        finally:
            self._pending.pop(token, None)


async def _quietly(step: Any) -> None:
    try:
        await step
    except Exception as exc:  # closing is best effort: a leftover topic or socket is harmless
        log.debug("closing step failed: %s", _describe(exc))


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    if not text or text == name:
        return name
    return text if text.startswith(f"{name}:") else f"{name}: {text}"  # aiokafka's name them
