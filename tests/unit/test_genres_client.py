"""The genres client without a broker: arguments refused before sending, replies read into
values or typed errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from genres_contracts.kafka import (
    ClientClosed,
    GenresClient,
    GenresClientError,
    InvalidRequest,
    RequestTimedOut,
    ServiceError,
    TrackNotFound,
    Unavailable,
    read_reply,
)


def reply(**fields: Any) -> bytes:
    return json.dumps({"track_id": 5, "tags": [], "pending": False} | fields).encode()


def test_arguments_out_of_range_are_refused_before_anything_is_sent() -> None:
    client = GenresClient("127.0.0.1:1")  # never started: a request would fail ClientClosed

    async def ask(**arguments: Any) -> None:
        await client.recommended_tags(**arguments)

    for arguments, field in (
        ({"track_id": 0}, "track_id"),
        ({"track_id": 1, "limit": 21}, "limit"),
        ({"track_id": 1, "wait_ms": 30_001}, "wait_ms"),
    ):
        with pytest.raises(InvalidRequest, match=f"invalid request: {field}: "):
            asyncio.run(ask(**arguments))
    with pytest.raises(ClientClosed, match="not started"):
        asyncio.run(ask(track_id=1))


@pytest.mark.parametrize("name", ["request_timeout", "start_timeout", "close_timeout"])
def test_timeouts_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        GenresClient("127.0.0.1:1", **{name: 0})


def test_an_answer_is_a_value_whatever_it_says() -> None:
    tags = [{"name": "ambient electronic", "score": 0.5}]
    assert read_reply(reply(tags=tags)).tags[0].name == "ambient electronic"
    assert read_reply(reply(available=False)).available is False
    assert read_reply(reply(pending=True)).pending is True
    assert read_reply(reply(future_field=1)).track_id == 5  # unknown fields are ignored


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("not_found", TrackNotFound),
        ("invalid_request", InvalidRequest),
        ("unavailable", Unavailable),
        ("internal", ServiceError),
    ],
)
def test_error_replies_raise_their_typed_error(kind: str, error: type[GenresClientError]) -> None:
    with pytest.raises(error, match="says why") as raised:
        read_reply(reply(error={"kind": kind, "message": "says why"}))
    assert raised.value.reply is not None
    assert raised.value.reply.track_id == 5
    if isinstance(raised.value, TrackNotFound):
        assert raised.value.track_id == 5


@pytest.mark.parametrize(
    "value", [b"{not json", b"", reply(error={"kind": "novel", "message": "?"}), b'{"tags": 1}']
)
def test_an_unreadable_reply_is_a_service_error(value: bytes) -> None:
    with pytest.raises(ServiceError, match="unreadable reply"):
        read_reply(value)


def test_every_error_has_the_one_root() -> None:
    for error in (Unavailable, RequestTimedOut, InvalidRequest, TrackNotFound, ServiceError):
        assert issubclass(error, GenresClientError)
    assert issubclass(ClientClosed, GenresClientError)
    assert str(RequestTimedOut("t", "abc", 0.5)) == "no reply to request abc on t within 0.5 s"
