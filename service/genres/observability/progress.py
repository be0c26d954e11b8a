"""Where the stall watchdog reads progress: one source per kind of consumer, and FastStream's
own fetch errors attributed to the subscriber they stopped.

Each source answers, for a partition its consumer owns, the offset below which every record is
done (``progress``) and the end offset (``highwater``); see ``genres.observability.stalls``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from genres.observability.stalls import StallWatchdog

# -- sources -------------------------------------------------------------------------------------

ConsumerRef = Callable[[], Any]
"""Returns the current aiokafka consumer, or None while there is none (not started, stopped)."""


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


def subscriber_consumer(subscriber: Any) -> ConsumerRef:
    """A FastStream subscriber's aiokafka consumer, which exists only while it runs."""
    return lambda: getattr(subscriber, "consumer", None)


# -- FastStream's own errors ---------------------------------------------------------------------


class SubscriberErrors(logging.Handler):
    """Notes the errors FastStream logs for its subscribers (fetch errors it retries itself).

    FastStream reports a failed fetch only by logging it (with the exception) from the
    subscriber's consume loop; the loop's frame in the traceback tells which subscriber it
    was. An error that names none is noted for all of them.
    """

    def __init__(self, watchdog: StallWatchdog, roles: Mapping[str, Any]) -> None:
        super().__init__(level=logging.ERROR)
        self._watchdog = watchdog
        self._roles = dict(roles)  # role -> subscriber

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return
        error = record.exc_info[1]
        owners = _owners(record.exc_info[2], self._roles) or list(self._roles)
        for role in owners:
            self._watchdog.note_error(role, error)


def _owners(trace: TracebackType | None, roles: Mapping[str, Any]) -> list[str]:
    by_id = {id(subscriber): role for role, subscriber in roles.items()}
    while trace is not None:
        role = by_id.get(id(trace.tb_frame.f_locals.get("self")))
        if role is not None:
            return [role]
        trace = trace.tb_next
    return []
