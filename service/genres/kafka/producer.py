"""Publishing: one aiokafka producer per process, JSON values keyed by track id."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from genres.config import Settings
from genres.kafka.broker import client_options
from genres.kafka.dead_letters import Rejected, dead_letter
from genres.kafka.refusals import refused

JSON_HEADERS = [("content-type", b"application/json")]


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=False).encode()


def track_key(track_id: int | None) -> bytes | None:
    return None if track_id is None else str(track_id).encode()


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """A topic that refuses our writes is named as such (``ClusterRefused``, WRITE)."""
    try:
        yield
    except KafkaError as exc:
        refusal = refused(exc, operation="WRITE")
        if refusal is not None:
            raise refusal from exc
        raise


class Publisher:
    """Publishes messages and dead letters, each acknowledged by the broker before returning.

    Topic names given here are canonical (``track.uploaded``); the settings' prefix is
    applied in one place, here.
    """

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self._producer = producer
        self._settings = settings
        self.on_dead_letter: Callable[[str], None] | None = None
        """Called with the original topic after each dead letter (metrics)."""

    @classmethod
    def create(cls, settings: Settings, **options: Any) -> Publisher:
        producer = AIOKafkaProducer(
            **client_options(settings),
            acks="all",
            enable_idempotence=settings.kafka_enable_idempotence,
            linger_ms=1,
            compression_type=settings.compression_type,
            max_request_size=16 * 1024 * 1024,
            **options,
        )
        return cls(producer, settings)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        return self._producer

    async def publish(
        self,
        topic: str,
        message: BaseModel,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        prefixed: bool = False,
    ) -> None:
        """Publish and wait for the broker's acknowledgement."""
        name = topic if prefixed else self._settings.topic(topic)
        with _writing():
            await self._producer.send_and_wait(
                name, value=encode(message), key=key, headers=JSON_HEADERS + list(headers or [])
            )

    async def publish_json(
        self, topic: str, value: Any, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Publish a plain JSON value to an already prefixed topic (replies)."""
        with _writing():
            await self._producer.send_and_wait(
                topic, value=json.dumps(value).encode(), key=key, headers=JSON_HEADERS + headers
            )

    async def dead_letter(self, record: Rejected, reason: str) -> None:
        """Send ``record``, unchanged, to ``<its topic>.dlq`` (the topic as the record had it)."""
        with _writing():
            await dead_letter(self._producer, record, reason)
        if self.on_dead_letter is not None:
            self.on_dead_letter(record.topic)
