"""What the AsyncAPI document declares: the service's description, every channel (what the
roles consume, from :mod:`genres.subscriptions`; what they publish, declared here) and the
header and key schemas FastStream cannot express."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from genres.subscriptions import SUBSCRIPTIONS
from genres_contracts import (
    ClassificationFailed,
    ClassificationRequested,
    GenresClassified,
    RecommendedTags,
    topics,
)

DESCRIPTION: Final = """\
Classifies the genres of music tracks, driven by Kafka events.

* The **classifier** (consumer group `genres-classifier`) reads `track.uploaded` and
  `track.classification_requested` and writes exactly one outcome per request:
  `track.genres_classified` or `track.genres_failed`.
* The **projector** (group `genres-projector`) stores the predictions of
  `track.genres_classified` in the track's `extra` and, when asked (`auto_tag`), adds tags.
* The **responder** (group `genres-responder`) answers `track.recommended_tags` requests on the
  request's `reply_to` topic, with its `correlation_id` header; it asks for an on-demand
  classification (`track.classification_requested`, `reason: on_demand`) when a track has none.
* `genres backfill` requests classification of tracks that lack current predictions.

Values are UTF-8 JSON, the key is the track id as a decimal string. Producers may send no
headers at all. Unknown fields are ignored; more optional fields may be added. Consumer groups
start from the earliest offset. Topic names may carry a deployment prefix
(`GENRES_TOPIC_PREFIX`), as may consumer groups.

Records that can never be handled go, unchanged (key, value and headers), to `<topic>.dlq`
with the headers `x-dlq-reason`, `x-original-topic`, `x-original-partition` and
`x-original-offset`.
"""

KEY_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": "^[1-9][0-9]*$",
    "description": "The track id as a decimal string (records of one track share a partition).",
}

DLQ_HEADERS: Final[dict[str, Any]] = {
    "type": "object",
    "description": "The original record's headers (kept) plus these four.",
    "required": [
        topics.DLQ_REASON_HEADER,
        topics.DLQ_ORIGINAL_TOPIC_HEADER,
        topics.DLQ_ORIGINAL_PARTITION_HEADER,
        topics.DLQ_ORIGINAL_OFFSET_HEADER,
    ],
    "properties": {
        topics.DLQ_REASON_HEADER: {
            "type": "string",
            "maxLength": 1000,
            "description": "Why the record was dead-lettered, one line.",
        },
        topics.DLQ_ORIGINAL_TOPIC_HEADER: {
            "type": "string",
            "description": "The topic the record was read from (with any prefix).",
        },
        topics.DLQ_ORIGINAL_PARTITION_HEADER: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Its partition, a decimal string.",
        },
        topics.DLQ_ORIGINAL_OFFSET_HEADER: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Its offset, a decimal string.",
        },
    },
}

DLQ_PAYLOAD: Final[dict[str, Any]] = {
    "title": "DeadLetter",
    "description": (
        "The original record's value, unchanged: whatever bytes the producer sent, "
        "which may not be JSON at all."
    ),
}

REQUEST_HEADERS: Final[dict[str, Any]] = {
    "type": "object",
    "description": "FastStream's request/reply convention.",
    "properties": {
        topics.REPLY_TO_HEADER: {
            "type": "string",
            "description": (
                "The topic to answer on. A request without one cannot be answered and goes "
                "to `track.recommended_tags.dlq`."
            ),
        },
        topics.CORRELATION_ID_HEADER: {
            "type": "string",
            "description": "Echoed back, byte for byte, on the reply.",
        },
    },
}

REPLY_HEADERS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        topics.CORRELATION_ID_HEADER: {
            "type": "string",
            "description": "The request's `correlation_id`, when it had one.",
        },
    },
}

REPLY_ADDRESS_LOCATION: Final = f"$message.header#/{topics.REPLY_TO_HEADER}"


@dataclass(frozen=True)
class Endpoint:
    """One operation of the document: who reads or writes which topic, with what."""

    key: str
    topic: str
    model: type[BaseModel] | None
    description: str
    receive: bool = False
    group: str | None = None
    headers: dict[str, Any] | None = None
    #: ``None`` for records of any content (dead letters)
    content_type: str | None = "application/json"


def _dlq(role: str, topic: str) -> Endpoint:
    return Endpoint(
        key=f"{role}.send.{topics.dead_letter_topic(topic)}",
        topic=topics.dead_letter_topic(topic),
        model=None,
        description=(
            f"The {role} dead-letters `{topic}` records it can never handle (unreadable, "
            "invalid): the original key, value and headers, plus headers saying why."
        ),
        headers=DLQ_HEADERS,
        content_type=None,
    )


REPLY_KEY: Final = "responder.send.reply"
REQUEST_KEY: Final = f"responder.receive.{topics.RECOMMENDED_TAGS}"

# What the roles consume comes from their one declaration (``genres.subscriptions``); what they
# publish is declared here.
_RECEIVED: Final = tuple(
    Endpoint(
        key=f"{subscription.role}.receive.{each.topic}",
        topic=each.topic,
        model=each.model,
        receive=True,
        group=subscription.group,
        headers=REQUEST_HEADERS if subscription.answers else None,
        description=each.description,
    )
    for subscription in SUBSCRIPTIONS
    for each in subscription.inputs
)
_DEAD_LETTERS: Final = tuple(
    _dlq(subscription.role, topic)
    for subscription in SUBSCRIPTIONS
    for topic in subscription.topics
)

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    *_RECEIVED,
    Endpoint(
        key=f"classifier.send.{topics.GENRES_CLASSIFIED}",
        topic=topics.GENRES_CLASSIFIED,
        model=GenresClassified,
        description="The classifier's outcome when the audio was classified.",
    ),
    Endpoint(
        key=f"classifier.send.{topics.GENRES_FAILED}",
        topic=topics.GENRES_FAILED,
        model=ClassificationFailed,
        description="The classifier's outcome when a classification ended without predictions.",
    ),
    Endpoint(
        key=f"responder.send.{topics.CLASSIFICATION_REQUESTED}",
        topic=topics.CLASSIFICATION_REQUESTED,
        model=ClassificationRequested,
        description=(
            "On demand (`reason: on_demand`): a track asked about has no predictions for its "
            "current `file_id`; at most one outstanding request per track and file."
        ),
    ),
    Endpoint(
        key=f"backfill.send.{topics.CLASSIFICATION_REQUESTED}",
        topic=topics.CLASSIFICATION_REQUESTED,
        model=ClassificationRequested,
        description="`genres backfill` (`reason: backfill`): tracks lacking current predictions.",
    ),
    Endpoint(
        key=REPLY_KEY,
        topic=topics.REPLY_TO_HEADER,  # placeholder: the address is the request's header
        model=RecommendedTags,
        headers=REPLY_HEADERS,
        description=(
            "The reply to a `RecommendedTagsRequest`, on the topic named by the request's "
            "`reply_to` header (as given, without prefix)."
        ),
    ),
    *_DEAD_LETTERS,
)
