"""The checked-in AsyncAPI document is the one the code generates, and it says enough."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from genres import asyncapi
from genres.classifier.entry import INPUTS as CLASSIFIER_INPUTS
from genres.config import Settings
from genres.database.engine import create_engine
from genres.kafka.producer import Publisher
from genres.projector.entry import register_projector
from genres.projector.store import SqlProjectionStore
from genres.responder.assembly import register_responder

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / asyncapi.DEFAULT_PATH
REGENERATE = "uv run python -m genres.asyncapi docs/asyncapi.json"

# docs/interface.md's topics, spelled out (not from the constants, so a renamed constant shows).
INTERFACE_TOPICS = {
    "track.uploaded",
    "track.classification_requested",
    "track.genres_classified",
    "track.genres_failed",
    "track.recommended_tags",
}
# `<topic>.dlq` of every topic the service reads.
DEAD_LETTER_TOPICS = {
    "track.uploaded.dlq",
    "track.classification_requested.dlq",
    "track.genres_classified.dlq",
    "track.recommended_tags.dlq",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(asyncapi.render()))


def test_checked_in_document_is_current() -> None:
    generated = asyncapi.render()
    checked_in = CHECKED_IN.read_text(encoding="utf-8") if CHECKED_IN.exists() else ""
    if generated != checked_in:
        diff = "".join(
            list(
                difflib.unified_diff(
                    checked_in.splitlines(keepends=True),
                    generated.splitlines(keepends=True),
                    "docs/asyncapi.json (checked in)",
                    "generated",
                )
            )[:60]
        )
        pytest.fail(
            f"docs/asyncapi.json is out of date with the code; regenerate it with\n"
            f"    {REGENERATE}\nand commit it.\n{diff}"
        )


def test_generation_is_deterministic() -> None:
    # FastStream keeps endpoints in sets: the order must not depend on the process.
    assert asyncapi.render() == asyncapi.render(asyncapi.build_app())


def test_faststream_docs_gen_writes_the_same_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "faststream",
            "docs",
            "gen",
            "--factory",
            "genres.asyncapi:build_app",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(asyncapi.render())


def test_document_is_asyncapi_3_with_the_package_version(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "genres"
    assert document["info"]["version"] == asyncapi.package_version()
    assert document["info"]["description"]


def test_every_interface_topic_is_a_channel(document: dict[str, Any]) -> None:
    addresses = {channel.get("address") for channel in document["channels"].values()}
    missing = (INTERFACE_TOPICS | DEAD_LETTER_TOPICS) - addresses
    assert not missing, f"channels missing from the AsyncAPI document: {sorted(missing)}"


def _operations(document: dict[str, Any], action: str) -> Iterator[tuple[str, str, str]]:
    """(address, message name, group or "") of each operation with ``action``."""
    for operation in document["operations"].values():
        if operation["action"] != action:
            continue
        channel = document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[-1]]
        group = operation.get("bindings", {}).get("kafka", {}).get("groupId", {})
        for reference in channel["messages"].values():
            message = document["components"]["messages"][reference["$ref"].rsplit("/", 1)[-1]]
            yield channel.get("address", ""), message["name"], "".join(group.get("enum", []))


def test_readers_and_writers_are_those_of_the_interface(document: dict[str, Any]) -> None:
    assert set(_operations(document, "receive")) == {
        ("track.uploaded", "TrackUploaded", "genres-classifier"),
        ("track.classification_requested", "ClassificationRequested", "genres-classifier"),
        ("track.genres_classified", "GenresClassified", "genres-projector"),
        ("track.recommended_tags", "RecommendedTagsRequest", "genres-responder"),
    }
    assert set(_operations(document, "send")) == {
        ("track.genres_classified", "GenresClassified", ""),
        ("track.genres_failed", "ClassificationFailed", ""),
        ("track.classification_requested", "ClassificationRequested", ""),
        ("", "RecommendedTags", ""),  # the reply: to the request's reply_to topic
        *((topic, "DeadLetter", "") for topic in DEAD_LETTER_TOPICS),
    }


def test_the_request_names_its_reply(document: dict[str, Any]) -> None:
    reply = document["operations"][asyncapi.REQUEST_KEY]["reply"]
    assert reply["address"]["location"] == "$message.header#/reply_to"
    channel = document["channels"][reply["channel"]["$ref"].rsplit("/", 1)[-1]]
    assert "address" not in channel  # dynamic
    (message_ref,) = reply["messages"]
    assert message_ref["$ref"].startswith(reply["channel"]["$ref"] + "/messages/")


def test_dead_letters_describe_their_headers(document: dict[str, Any]) -> None:
    for message in document["components"]["messages"].values():
        if message["name"] != "DeadLetter":
            continue
        headers = message["headers"]
        assert set(headers["required"]) == {
            "x-dlq-reason",
            "x-original-topic",
            "x-original-partition",
            "x-original-offset",
        }
        assert all(p["description"] for p in headers["properties"].values())


def test_messages_carry_the_kafka_key(document: dict[str, Any]) -> None:
    for name, message in document["components"]["messages"].items():
        assert message["bindings"]["kafka"]["key"]["type"] == "string", name


def test_payload_fields_carry_descriptions(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model in (
        "TrackUploaded",
        "ClassificationRequested",
        "GenresClassified",
        "ClassificationFailed",
        "RecommendedTagsRequest",
        "RecommendedTags",
    ):
        assert schemas[model].get("description"), f"{model} has no description (docstring)"
    undocumented = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, spec in schema.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert not undocumented, f"fields without a description: {undocumented}"


async def test_documented_topics_and_groups_are_those_the_roles_register() -> None:
    """The real registration code subscribes where the document says (topics and groups)."""
    settings = Settings(
        kafka_bootstrap_servers="localhost:9092",
        database_url="postgresql://docs@localhost/docs",
        genres_topic_prefix="",
    )
    assert settings.database_url is not None
    engine = create_engine(settings.database_url)  # never connects
    broker = KafkaBroker("localhost:9092")
    publisher = cast(Publisher, object())
    register_projector(
        broker, settings=settings, store=SqlProjectionStore(engine), publisher=publisher
    )
    register_responder(broker, settings=settings, engine=engine, publisher=publisher)
    try:
        registered = {
            (topic, subscriber.group_id)
            for subscriber in cast(list[Any], broker.subscribers)
            for topic in subscriber.specification.topics
        }
    finally:
        await engine.dispose()
    documented = {
        (endpoint.topic, endpoint.group)
        for endpoint in asyncapi.ENDPOINTS
        if endpoint.receive and endpoint.group != "genres-classifier"
    }
    assert registered == documented
    classifier = {
        (endpoint.topic, endpoint.model)
        for endpoint in asyncapi.ENDPOINTS
        if endpoint.receive and endpoint.group == "genres-classifier"
    }
    assert classifier == set(CLASSIFIER_INPUTS.items())
