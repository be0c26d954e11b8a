"""Dead letters: the original record, unchanged, with headers saying why."""

from __future__ import annotations

import logging
from typing import Protocol

from genres.kafka.records import Record
from genres_contracts import topics

log = logging.getLogger(__name__)


class RawProducer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object: ...


def dlq_headers(
    reason: str, topic: str, partition: int, offset: int, original: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """The original headers plus ours; the reason is one line, at most 1000 characters."""
    line = " ".join(reason.split())[:1000]
    ours = {
        topics.DLQ_REASON_HEADER: line,
        topics.DLQ_ORIGINAL_TOPIC_HEADER: topic,
        topics.DLQ_ORIGINAL_PARTITION_HEADER: str(partition),
        topics.DLQ_ORIGINAL_OFFSET_HEADER: str(offset),
    }
    kept = [(name, value) for name, value in original if name not in ours]
    return kept + [(name, value.encode()) for name, value in ours.items()]


async def dead_letter(producer: RawProducer, record: Record, reason: str) -> None:
    """Publish ``record`` unchanged to ``<its topic>.dlq`` with headers saying why (``reason``),
    and wait until the broker has it."""
    await producer.send_and_wait(
        topics.dead_letter_topic(record.topic),
        value=record.value,
        key=record.key,
        headers=dlq_headers(
            reason, record.topic, record.partition, record.offset, list(record.headers or ())
        ),
    )
    log.warning(
        "dead-lettered a record",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": reason,
            # The key is the track id by convention; the value may not be readable at all.
            "track_id": _key_text(record.key),
        },
    )


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    return key[:64].decode(errors="replace")
