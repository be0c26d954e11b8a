"""The projector's entrypoint: a batch subscriber on ``track.genres_classified``.

Acknowledgement is manual and happens only after the batch's transaction committed. On a
batch subscriber an ack commits the consumer's position, which is exactly the batch just
handled. Database outages are waited out inside the handler (no ack, no new fetch), so the
batch is neither lost nor reordered; the dead-letter topic takes records that can never be
read, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from genres.config import Settings
from genres.errors import ClusterRefused, InvalidMessage
from genres.kafka.entry import BusEntry, Subscribed
from genres.kafka.parsing import parse
from genres.kafka.producer import Publisher
from genres.kafka.records import Record
from genres.observability.tracing import record_spans
from genres.projector.rule import ProjectionReport, ProjectionStore, project
from genres.retry import ErrorHook, retrying
from genres.subscriptions import PROJECTOR
from genres_contracts import GenresClassified

log = logging.getLogger(__name__)

GROUP = PROJECTOR.group
MAX_RECORDS = 500
PROJECTOR_FETCH_MAX_WAIT_MS = 100
PROJECTOR_FETCH_MIN_BYTES = 64 * 1024
# After an unexpected error the batch is rewound; the pause keeps a bug from spinning a core.
REWIND_PAUSE_SECONDS = 1.0


async def handle_batch(
    records: Sequence[Record],
    *,
    store: ProjectionStore,
    publisher: Publisher,
    on_error: ErrorHook | None = None,
) -> ProjectionReport:
    """Dead-letter what cannot be read, project the rest; returns once it is all durable."""
    events: list[GenresClassified] = []
    for record in records:
        try:
            events.append(parse(GenresClassified, record.value))
        except InvalidMessage as exc:
            await retrying(
                partial(publisher.dead_letter, record, str(exc)),
                what="dead-letter",
                on_error=on_error,
            )
    return await retrying(
        lambda: project(events, store=store), what="projection", on_error=on_error
    )


def _records(message: StreamMessage[Any]) -> Sequence[Record]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


async def _leave_undecoded(message: StreamMessage[Any]) -> None:
    # The handler reads the raw records itself; FastStream's JSON decoding would fail on the
    # very records that must be dead-lettered.
    return None


def register_projector(
    broker: KafkaBroker,
    *,
    settings: Settings,
    store: ProjectionStore,
    publisher: Publisher,
    max_records: int = MAX_RECORDS,
    on_projected: Callable[[ProjectionReport], None] | None = None,
    on_error: ErrorHook | None = None,
) -> Subscribed:
    """Subscribe the projector to ``track.genres_classified`` (group ``genres-projector``).

    ``on_projected`` is told each batch's report once it is durable (metrics); ``on_error``
    each failure met while storing one (the stall watchdog). Returns the subscriber.
    """
    entry = BusEntry.of(PROJECTOR, settings)
    fetch = entry.options

    subscribed = entry.subscribed(
        broker,
        batch=True,
        ack_policy=AckPolicy.MANUAL,
        max_records=max_records,
        decoder=_leave_undecoded,
        title="genres-projector",
        description="Stores each track's current genre predictions in tracks.extra.",
        # Batches are the point here: let the broker gather records rather than answer each
        # fetch with the one or two that just arrived (measured: CPU per event of both).
        fetch_max_wait_ms=max(fetch["fetch_max_wait_ms"], PROJECTOR_FETCH_MAX_WAIT_MS),
        fetch_min_bytes=PROJECTOR_FETCH_MIN_BYTES,
    )

    async def project_genres(message: KafkaMessage) -> None:
        records = _records(message)
        if not records:
            return
        try:
            # One span per record, each continuing its classification's trace.
            spans = [(r.topic, r.partition, r.offset, r.headers) for r in records]
            with record_spans(f"{records[0].topic} project", spans):
                report = await handle_batch(
                    records, store=store, publisher=publisher, on_error=on_error
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not transient and not the record's fault (a bug, a schema problem): rewind so
            # the batch is fetched again rather than skipped, and let it be seen in the logs.
            # A refusal is named once, where on_error leads (the process stops on it).
            if not isinstance(exc, ClusterRefused):
                log.exception("projection failed; the batch will be fetched again")
            if on_error is not None:
                on_error(exc)
            await asyncio.sleep(REWIND_PAUSE_SECONDS)
            await message.nack()
            return
        await message.ack()
        if on_projected is not None:
            on_projected(report)

    subscribed.subscriber(project_genres)
    return subscribed
