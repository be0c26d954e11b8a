"""The service's AsyncAPI 3.0 document, generated from the code.

Every channel of docs/interface.md is declared here on a FastStream broker that never connects,
with the real message models of :mod:`genres_contracts` and the topic and consumer-group
constants the roles use (their handlers consume raw records, so their own signatures say
nothing about payloads). What FastStream cannot express (message headers, the Kafka key,
consumer groups, the request's dynamic reply address) is added to the generated document by
:class:`GenresAsyncAPI`, so ``faststream docs gen`` and :func:`write_asyncapi` write the same
file.

Regenerate ``docs/asyncapi.json`` after changing a message model or a channel::

    uv run python -m genres.asyncapi docs/asyncapi.json
    # same output:
    uv run faststream docs gen --factory genres.asyncapi:build_app --out docs/asyncapi.json

Nothing here runs when the service starts: the broker is built only by :func:`build_app`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI, Specification
from pydantic import BaseModel

from genres.subscriptions import SUBSCRIPTIONS
from genres_contracts import (
    ClassificationFailed,
    ClassificationRequested,
    GenresClassified,
    RecommendedTags,
    topics,
)

__all__ = [
    "DEFAULT_PATH",
    "TITLE",
    "GenresAsyncAPI",
    "build_app",
    "build_broker",
    "render",
    "write_asyncapi",
]

TITLE: Final = "genres"
#: Where the checked-in document lives, relative to the repository root.
DEFAULT_PATH: Final = Path("docs/asyncapi.json")
#: Shown as the server; nothing connects to it (``KAFKA_BOOTSTRAP_SERVERS`` in a deployment).
DOCS_SERVER: Final = "localhost:9092"
KAFKA_BINDING_VERSION: Final = "0.4.0"  # as FastStream writes its channel bindings

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


def _package_version() -> str:
    try:
        return version("genres")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def _documentation_only(model: type[BaseModel]) -> Callable[..., Any]:
    """A handler whose signature carries ``model``; it never runs (the broker never starts)."""

    async def handler(body: Any) -> None:
        raise NotImplementedError("documentation only")

    handler.__annotations__ = {"body": model, "return": None}
    handler.__name__ = model.__name__
    return handler


def build_broker() -> KafkaBroker:
    """A broker declaring every channel; it is never started."""
    broker = KafkaBroker(DOCS_SERVER, description="Kafka (KAFKA_BOOTSTRAP_SERVERS).")
    for endpoint in ENDPOINTS:
        if endpoint.receive:
            assert endpoint.model is not None
            broker.subscriber(
                endpoint.topic,
                group_id=endpoint.group,
                auto_offset_reset="earliest",
                title=endpoint.key,
                description=endpoint.description,
                include_in_schema=True,
            )(_documentation_only(endpoint.model))
        else:
            broker.publisher(
                endpoint.topic,
                title=endpoint.key,
                description=endpoint.description,
                schema=endpoint.model,
                include_in_schema=True,
            )
    return broker


class GenresAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3.0 factory plus what its declarations cannot carry."""

    def __init__(self, broker: KafkaBroker, endpoints: Sequence[Endpoint] = ENDPOINTS) -> None:
        super().__init__(
            broker,
            title=TITLE,
            version=_package_version(),
            description=DESCRIPTION,
            schema_version="3.0.0",
        )
        self._endpoints = tuple(endpoints)

    def to_specification(self) -> Specification:
        spec = super().to_specification()
        _complete(spec, self._endpoints)
        return spec


def _complete(spec: Any, endpoints: Sequence[Endpoint]) -> None:
    """Add headers, keys, groups, descriptions and the reply to FastStream's document."""
    messages: dict[str, Any] = spec.components.messages
    payloads: dict[str, Any] = spec.components.schemas
    for endpoint in endpoints:
        operation = spec.operations[endpoint.key]
        channel = spec.channels[endpoint.key]
        operation.description = endpoint.description
        if endpoint.group is not None:
            operation.bindings = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [endpoint.group]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        for reference in channel.messages.values():
            name = reference.ref.rsplit("/", 1)[-1]
            message = messages[name]
            message.contentType = endpoint.content_type
            message.bindings = {
                "kafka": {"key": KEY_SCHEMA, "bindingVersion": KAFKA_BINDING_VERSION}
            }
            if endpoint.headers is not None:
                message.headers = endpoint.headers
            if endpoint.model is not None:
                message.name = endpoint.model.__name__
                message.summary = (endpoint.model.__doc__ or "").strip().splitlines()[0]
            else:
                old = message.payload["$ref"].rsplit("/", 1)[-1]
                payloads.pop(old, None)
                payloads[DLQ_PAYLOAD["title"]] = dict(DLQ_PAYLOAD)
                message.payload = {"$ref": f"#/components/schemas/{DLQ_PAYLOAD['title']}"}
                message.name = "DeadLetter"
                message.summary = "A record that could not be handled, unchanged."
    _order(spec, [endpoint.key for endpoint in endpoints])
    # The reply goes wherever the request says: a channel without an address.
    spec.channels[REPLY_KEY].address = None
    spec.channels[REPLY_KEY].bindings = None
    reply_messages = spec.operations[REPLY_KEY].messages
    spec.operations[REQUEST_KEY].reply = {
        "address": {
            "location": REPLY_ADDRESS_LOCATION,
            "description": "The request's `reply_to` header.",
        },
        "channel": {"$ref": f"#/channels/{REPLY_KEY}"},
        "messages": [{"$ref": ref.ref} for ref in reply_messages],
    }


def _order(spec: Any, keys: list[str]) -> None:
    """Declaration order for channels, operations and messages, names for schemas.

    FastStream keeps its endpoints in sets, so its order changes from one process to the next.
    """

    def ordered(items: dict[str, Any], first: list[str]) -> dict[str, Any]:
        known = [key for key in first if key in items]
        return {key: items[key] for key in [*known, *sorted(set(items) - set(known))]}

    spec.channels = ordered(spec.channels, keys)
    spec.operations = ordered(spec.operations, keys)
    message_keys = [
        reference.ref.rsplit("/", 1)[-1]
        for key in spec.channels
        for reference in spec.channels[key].messages.values()
    ]
    spec.components.messages = ordered(spec.components.messages, message_keys)
    spec.components.schemas = ordered(spec.components.schemas, [])


def build_app() -> FastStream:
    """The documentation app: ``faststream docs gen --factory genres.asyncapi:build_app``."""
    broker = build_broker()
    return FastStream(broker, specification=GenresAsyncAPI(broker))


def render(app: FastStream | None = None) -> str:
    """The document as written to ``docs/asyncapi.json`` (as ``faststream docs gen`` does)."""
    app = build_app() if app is None else app
    return json.dumps(app.schema.to_specification().to_jsonable(), indent=2) + "\n"


def write_asyncapi(path: Path = DEFAULT_PATH) -> Path:
    """Write the AsyncAPI document to ``path``; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(write_asyncapi(Path(args[0]) if args else DEFAULT_PATH))


if __name__ == "__main__":
    main()
