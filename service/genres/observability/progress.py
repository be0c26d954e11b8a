"""Where the stall watchdog reads progress: one source per kind of consumer and one for the
publisher, FastStream's own fetch errors attributed to the subscriber they stopped, the
producer's refusals to the partition they hit, and which partitions have no leader.

A FastStream subscriber is read only through :class:`ConsumerState` (its bus entry's
``genres.kafka.entry.Subscribed``): nothing here knows FastStream's objects.

Each source answers, for a partition its consumer owns, the offset below which every record is
done (``progress``) and the end offset (``highwater``); see ``genres.observability.stalls``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

from aiokafka import TopicPartition

from genres.kafka.broker import leaders
from genres.kafka.producer import Deliveries, Publisher
from genres.observability.groups import Coordination
from genres.observability.stalls import PartitionKey, StallWatchdog

# -- sources -------------------------------------------------------------------------------------

ConsumerRef = Callable[[], Any]
"""Returns the current aiokafka consumer, or None while there is none (not started, stopped)."""


class ConsumerState(Protocol):
    """What a role's bus entry tells of its consumer (``genres.kafka.entry.Subscribed``)."""

    def consumer(self) -> Any:
        """The current aiokafka consumer, or None while there is none."""

    def fetching(self) -> bool:
        """Whether the caller runs in the consumer's own fetch loop (where its client logs a
        fetch error it retries)."""


class _ConsumerSource:
    def __init__(self, consumer: ConsumerRef) -> None:
        self._consumer = consumer

    def assignment(self) -> Iterable[Any]:
        consumer = self._consumer()
        if consumer is None:
            return ()
        assigned: Iterable[Any] = consumer.assignment()
        return assigned

    def highwater(self, partition: Any) -> int | None:
        consumer = self._consumer()
        if consumer is None:
            return None
        end: int | None = consumer.highwater(partition)
        return end

    def coordination(self) -> Coordination | None:
        """The consumer's group coordinator as aiokafka's ``GroupCoordinator`` holds it: the
        node it talks to (None once marked dead, until found again) and the future a loss
        completes, made anew each time a coordinator is found. None without a group."""
        return coordination(self._consumer())


class PositionProgress(_ConsumerSource):
    """A reader that is done with a record once it has it: its position is its progress.

    The group-less readers (outcome listeners, reply readers) and the responder's subscriber
    (``ACK_FIRST``: a request is handed to a task of its own) are watched this way.
    """

    async def progress(self, partition: Any) -> int | None:
        consumer = self._consumer()
        if consumer is None:
            return None
        position: int = await consumer.position(partition)
        return position


class CommittedProgress(_ConsumerSource):
    """A group consumer that commits after the work (the projector): the committed offset.

    Its position runs ahead of the work (a batch is fetched before it is stored), so only the
    broker's committed offset tells progress: one round trip per partition and sample. A group
    that never committed a partition is at its beginning.
    """

    async def progress(self, partition: Any) -> int | None:
        consumer = self._consumer()
        if consumer is None:
            return None
        committed: int | None = await consumer.committed(partition)
        if committed is None:
            beginnings = await consumer.beginning_offsets([partition])
            committed = beginnings.get(partition)
        return committed


class LocalProgress(_ConsumerSource):
    """A consumer that knows its own progress (the classifier's commit window).

    ``local(partition)`` is the committed prefix, or None when no record of the partition is in
    the window since it was assigned: then nothing fetched is undone and the position counts.
    """

    def __init__(self, consumer: ConsumerRef, local: Callable[[Any], int | None]) -> None:
        super().__init__(consumer)
        self._local = local

    async def progress(self, partition: Any) -> int | None:
        known = self._local(partition)
        if known is not None:
            return known
        return await PositionProgress(self._consumer).progress(partition)


class SendProgress:
    """The publisher's writes: acknowledged sends are its progress, waiting (or refused)
    ones its end (:class:`genres.kafka.producer.Deliveries`)."""

    def __init__(self, deliveries: Deliveries) -> None:
        self._deliveries = deliveries

    def assignment(self) -> Iterable[Any]:
        return [TopicPartition(topic, p) for topic, p in self._deliveries.partitions()]

    def highwater(self, partition: Any) -> int | None:
        return self._deliveries.end(partition.topic, partition.partition)

    async def progress(self, partition: Any) -> int | None:
        return self._deliveries.progress(partition.topic, partition.partition)


def coordination(consumer: Any) -> Coordination | None:
    """``consumer``'s (an ``AIOKafkaConsumer``) group coordinator; None when it has no group
    or is not started."""
    coordinator = getattr(consumer, "_coordinator", None)
    group = getattr(coordinator, "group_id", None)
    if coordinator is None or group is None:  # NoGroupCoordinator: a group-less reader
        return None
    dead = coordinator._coordinator_dead_fut
    known = coordinator.coordinator_id is not None and not dead.done()
    session = getattr(coordinator, "_session_timeout_ms", 0) / 1000
    return Coordination(str(group), known, dead, session)


# -- FastStream's own errors ---------------------------------------------------------------------


class SubscriberErrors(logging.Handler):
    """Notes the errors FastStream logs for its subscribers (fetch errors it retries itself).

    FastStream reports a failed fetch only by logging it (with the exception) from the
    subscriber's consume loop, naming no subscriber; a handler runs where the line is logged,
    so the subscriber whose loop is ``fetching`` is the one. An error no subscriber claims is
    noted for all of them.
    """

    def __init__(self, watchdog: StallWatchdog, roles: Mapping[str, ConsumerState]) -> None:
        super().__init__(level=logging.ERROR)
        self._watchdog = watchdog
        self._roles = dict(roles)

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return
        error = record.exc_info[1]
        owners = [role for role, state in self._roles.items() if state.fetching()]
        for role in owners or self._roles:
            self._watchdog.note_error(role, error)


# -- the producer's refusals ---------------------------------------------------------------------

PRODUCER_LOGGER = "aiokafka.producer.sender"


class ProduceErrors(logging.Handler):
    """Notes the refusals aiokafka's producer retries by itself (too few in-sync replicas, not
    the leader): it only logs them, naming the partition, while the send waits.

    Installed on ``aiokafka.producer.sender``; each refusal is noted for ``role`` on its
    partition, a failed request (no partition named) for all of the role's partitions.
    """

    def __init__(self, watchdog: StallWatchdog, role: str) -> None:
        super().__init__(level=logging.WARNING)
        self._watchdog = watchdog
        self._role = role

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        partition = next((a for a in args if isinstance(a, TopicPartition)), None)
        error = next((a for a in args if _is_error(a)), None)
        if error is None:
            return
        if isinstance(error, BaseException):
            self._watchdog.note_error(self._role, error, partition)
        elif isinstance(error, type):
            description = getattr(error, "description", "")
            text = f"{error.__name__}: {description}" if description else error.__name__
            self._watchdog.note_error(self._role, f"produce refused: {text}", partition)


def _is_error(value: object) -> bool:
    if isinstance(value, BaseException):
        return True
    return isinstance(value, type) and issubclass(value, BaseException)


# -- leaders -------------------------------------------------------------------------------------


def leaderless(client: Any) -> Callable[[Collection[str]], Any]:
    """``find(topics)``: the partitions of ``topics`` without a leader, from one metadata
    request (:func:`genres.kafka.broker.leaders`; no topic is created by it).

    ``client`` is an aiokafka ``AIOKafkaClient`` (a started producer's ``.client``). Raises
    ``KafkaError`` when no broker answers; a topic the broker does not know is left out.
    """

    async def find(topics: Collection[str]) -> set[PartitionKey]:
        if not topics:
            return set()
        found = await leaders(client, topics)
        return {
            (topic, partition)
            for topic, partitions in found.items()
            for partition, leader in partitions.items()
            if leader < 0
        }

    return find


# -- the publisher -------------------------------------------------------------------------------

PUBLISHER = "publisher"


def watch_publisher(watchdog: StallWatchdog, publisher: Publisher) -> Callable[[], None]:
    """Watch ``publisher``'s writes under the role ``publisher``, its producer's refusals as
    their reasons, and (through its client) which partitions have no leader. Returns the
    undoing of what it installed."""
    publisher.on_error = watchdog.reporter(PUBLISHER)
    watchdog.watch(PUBLISHER, SendProgress(publisher.deliveries), writes=True)
    watchdog.watch_leaders(leaderless(publisher.producer.client))
    errors = ProduceErrors(watchdog, PUBLISHER)
    sender = logging.getLogger(PRODUCER_LOGGER)
    sender.addHandler(errors)

    def undo() -> None:
        sender.removeHandler(errors)
        watchdog.unwatch(PUBLISHER)

    return undo
