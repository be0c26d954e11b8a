"""Consumed records: the one shape the service reads them in, and FastStream's parsing made
safe for their headers.

FastStream's Kafka parsers decode every header value as UTF-8; a record (or a whole batch)
with one undecodable header fails before the handler runs and is skipped, uncommitted, until
a later acknowledgement commits past it. Producers may be written in any language, so the
service parses a copy whose undecodable header values are blanked, and hands handlers the
untouched records in ``raw_message``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias

from aiokafka import ConsumerRecord
from faststream.message import StreamMessage


class Record(Protocol):
    """A consumed record, as any client reads it (aiokafka's ``ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


Raw: TypeAlias = "ConsumerRecord[Any, Any] | tuple[ConsumerRecord[Any, Any], ...]"
"""What FastStream hands a parser: one record, or a batch of them."""


def _decodable(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    headers = list(record.headers or ())
    clean = []
    for name, value in headers:
        try:
            value.decode()
        except UnicodeDecodeError:
            value = b""
        clean.append((name, value))
    return dataclasses.replace(record, headers=clean) if clean != headers else record


async def tolerant_parser(
    raw: Raw, original: Callable[[Raw], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream's own parser on decodable copies; ``raw_message`` keeps the originals."""
    copy: Raw = tuple(map(_decodable, raw)) if isinstance(raw, tuple) else _decodable(raw)
    message = await original(copy)
    message.raw_message = raw
    return message
