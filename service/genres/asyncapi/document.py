"""The AsyncAPI document built from the channels: a FastStream broker that never connects
declares them, and :class:`GenresAsyncAPI` adds what FastStream cannot write (headers, keys,
groups, the reply address) and a stable order."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI, Specification
from pydantic import BaseModel

from genres.asyncapi.channels import (
    DESCRIPTION,
    DLQ_PAYLOAD,
    ENDPOINTS,
    KEY_SCHEMA,
    REPLY_ADDRESS_LOCATION,
    REPLY_KEY,
    REQUEST_KEY,
    Endpoint,
)

TITLE: Final = "genres"
#: Where the checked-in document lives, relative to the repository root.
DEFAULT_PATH: Final = Path("docs/asyncapi.json")
#: Shown as the server; nothing connects to it (``KAFKA_BOOTSTRAP_SERVERS`` in a deployment).
DOCS_SERVER: Final = "localhost:9092"
KAFKA_BINDING_VERSION: Final = "0.4.0"  # as FastStream writes its channel bindings


def package_version() -> str:
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
            version=package_version(),
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
