"""The classifier's entrypoint: records in, outcome events out, errors mapped here."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import ConsumerRecord
from pydantic import BaseModel

from genres.classifier.consumer import ConcurrentConsumer
from genres.classifier.rule import Ledger, handle_classification
from genres.classify.port import Classifier
from genres.config import Settings
from genres.errors import InvalidMessage
from genres.kafka.entry import BusEntry
from genres.kafka.parsing import parse
from genres.kafka.producer import Publisher, track_key
from genres.observability.tracing import consume_span, outgoing_headers
from genres.subscriptions import CLASSIFIER
from genres_contracts import (
    ClassificationFailed,
    GenresClassified,
    TrackUploaded,
    derived_event_id,
    topics,
)

log = logging.getLogger(__name__)

GROUP = CLASSIFIER.group


def _request_model(model: type[BaseModel]) -> type[TrackUploaded]:
    if not issubclass(model, TrackUploaded):
        raise TypeError(f"the classifier reads uploads and requests, not {model.__name__}")
    return model


INPUTS: dict[str, type[TrackUploaded]] = {
    each.topic: _request_model(each.model) for each in CLASSIFIER.inputs
}


class PublishedOutcomes:
    """Outcome events on their topics, keyed by track id."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def classified(self, event: GenresClassified) -> None:
        await self._publisher.publish(
            topics.GENRES_CLASSIFIED,
            event,
            key=track_key(event.track_id),
            headers=outgoing_headers(),
        )

    async def failed(self, event: ClassificationFailed) -> None:
        await self._publisher.publish(
            topics.GENRES_FAILED, event, key=track_key(event.track_id), headers=outgoing_headers()
        )


def create_classifier_consumer(
    settings: Settings,
    *,
    classifier: Classifier,
    ledger: Ledger,
    publisher: Publisher,
    on_outcome: Callable[[str], None] | None = None,
) -> ConcurrentConsumer:
    """``on_outcome`` is told the kind of each handled request's outcome (classified, failed,
    republished)."""
    entry = BusEntry.of(CLASSIFIER, settings)
    by_topic = {topic: (name, INPUTS[name]) for topic, (name, _) in entry.inputs().items()}
    outcomes = PublishedOutcomes(publisher)

    async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        canonical, model = by_topic[record.topic]
        try:
            request = parse(model, record.value)
        except InvalidMessage as exc:
            await publisher.dead_letter(record, str(exc))
            return
        source_event_id = request.event_id or derived_event_id(
            canonical, record.partition, record.offset
        )
        handled = await handle_classification(
            request,
            source_event_id=source_event_id,
            classifier=classifier,
            ledger=ledger,
            outcomes=outcomes,
        )
        if on_outcome is not None:
            on_outcome(handled.kind.value)
        log.info(
            "classification handled: %s",
            handled.kind.value,
            extra={
                "track_id": request.track_id,
                "file_id": request.file_id,
                "event_id": handled.event.event_id,
                "source_event_id": source_event_id,
                "outcome": handled.kind.value,
            },
        )

    async def traced(record: ConsumerRecord[bytes, bytes]) -> None:
        # A child of the record's `traceparent`, current while the outcome is published.
        with consume_span(record.topic, record.partition, record.offset, record.headers):
            await handle(record)

    grace_seconds = min(settings.replicate_timeout_seconds, 60.0)
    consumer = entry.consumer(
        max_poll_records=settings.records_in_flight,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        # aiokafka's default is the session timeout: a member still draining its revoked
        # window after that is dropped from the group, and the next owner runs the same
        # records again (paid twice with no crash). The group waits for the drain instead
        # (grace, the 10 s given to cancelled records, a margin); a dead member is still
        # dropped after the session timeout.
        rebalance_timeout_ms=max(
            settings.kafka_session_timeout_ms, int((grace_seconds + 15.0) * 1000)
        ),
    )
    return ConcurrentConsumer(
        consumer,
        list(entry.topics),
        traced,
        records_in_flight=settings.records_in_flight,
        grace_seconds=grace_seconds,
    )
