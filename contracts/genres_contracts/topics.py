"""Topic names of the genres service (docs/interface.md)."""

from typing import Final

TRACK_UPLOADED: Final = "track.uploaded"
CLASSIFICATION_REQUESTED: Final = "track.classification_requested"
GENRES_CLASSIFIED: Final = "track.genres_classified"
GENRES_FAILED: Final = "track.genres_failed"
RECOMMENDED_TAGS: Final = "track.recommended_tags"

DLQ_SUFFIX: Final = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``: the original name plus ``.dlq``."""
    return f"{topic}{DLQ_SUFFIX}"


# Header names of dead-letter records and of request/reply (FastStream's convention).
DLQ_REASON_HEADER: Final = "x-dlq-reason"
DLQ_ORIGINAL_TOPIC_HEADER: Final = "x-original-topic"
DLQ_ORIGINAL_PARTITION_HEADER: Final = "x-original-partition"
DLQ_ORIGINAL_OFFSET_HEADER: Final = "x-original-offset"
REPLY_TO_HEADER: Final = "reply_to"
CORRELATION_ID_HEADER: Final = "correlation_id"
